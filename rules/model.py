"""The rules file as strict pydantic models: every key known, every value typed, nothing guessed.

The file (``rules/default.yaml`` is the commented default) is data the business owns: status maps,
currency, address standardisation and ERP field fitting, variant resolution, enrichment, warehouse
mapping, validation tolerances and anomaly thresholds. :func:`rules.engine.load_rules` parses it into
:class:`RulesFile` and reports every problem with its YAML path (``status.prestashop.states[3].payment``).

Conventions of the file: unknown keys are errors (a typo must not silently disable a rule); decimals
may be written as numbers or quoted strings and are read as :class:`~decimal.Decimal` from their text,
never through binary floats; status symbols are the canonical enum names.
"""

from __future__ import annotations

import re
from decimal import (
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_DOWN,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    ROUND_UP,
    Decimal,
    InvalidOperation,
)
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from rules.canonical_status import FulfillmentStatus, Lifecycle, PaymentStatus


def _decimal(value: object) -> Decimal:
    # bool is an int subclass; `true` where an amount belongs is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError("expected a decimal number (e.g. 0.923 or '0.923')")
    try:
        # str() of a YAML float is its shortest round-trip text, i.e. what the author wrote.
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"expected a decimal number, got {value!r}") from None
    if not result.is_finite():
        raise ValueError("expected a finite decimal number")
    return result


RuleDecimal = Annotated[Decimal, BeforeValidator(_decimal)]
"""A decimal read from its text (YAML number or string)."""

_ISO4217 = re.compile(r"^[A-Z]{3}$")
_ALPHA2 = re.compile(r"^[A-Z]{2}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- status ---------------------------------------------------------------------------------------------


class StatusTarget(_Strict):
    """What a matched source state says; an omitted dimension means "says nothing about it"."""

    payment: PaymentStatus | None = None
    fulfillment: FulfillmentStatus | None = None
    lifecycle: Lifecycle | None = None

    @model_validator(mode="after")
    def _says_something(self) -> StatusTarget:
        if self.payment is None and self.fulfillment is None and self.lifecycle is None:
            raise ValueError("a status rule must set at least one of payment, fulfillment, lifecycle")
        for name, value in (
            ("payment", self.payment),
            ("fulfillment", self.fulfillment),
            ("lifecycle", self.lifecycle),
        ):
            if value is not None and value.value == "UNKNOWN":
                raise ValueError(f"{name}: UNKNOWN is the 'no statement' default, not a target; omit it")
        return self


class StateFlags(_Strict):
    """Order-state flags to match (omitted = don't care), as the shop's ``order_states`` carry them."""

    paid: StrictBool | None = None
    shipped: StrictBool | None = None
    delivery: StrictBool | None = None
    logable: StrictBool | None = None
    invoice: StrictBool | None = None


class PrestaShopStateRule(StatusTarget):
    """One PrestaShop order state → canonical status.

    ``key`` names a standard state by its configuration key (``PS_OS_SHIPPING``): the shop's own id for it
    comes from its configuration at run time. Rules with ``flags`` instead match custom states (no
    standard key) by their flags; the first matching rule wins.
    """

    key: StrictStr | None = Field(default=None, pattern=r"^PS_OS_[A-Z0-9_]+$")
    flags: StateFlags | None = None

    @model_validator(mode="after")
    def _key_or_flags(self) -> PrestaShopStateRule:
        if (self.key is None) == (self.flags is None):
            raise ValueError("give exactly one of key (a PS_OS_* configuration key) or flags")
        return self


class UnmappedPolicy(StrEnum):
    """What a state no rule matches does."""

    KEEP = "keep"
    """Say nothing about the status (the order keeps what it has); the source status is still recorded."""
    INVALID = "invalid"
    """The message is invalid (reason ``unmapped_status``): goes to the DLQ until the rules cover it."""


class WritebackWhen(_Strict):
    """Canonical condition for a write-back rule: every given dimension must equal its value."""

    payment: PaymentStatus | None = None
    fulfillment: FulfillmentStatus | None = None
    lifecycle: Lifecycle | None = None

    @model_validator(mode="after")
    def _non_empty(self) -> WritebackWhen:
        if self.payment is None and self.fulfillment is None and self.lifecycle is None:
            raise ValueError("when must name at least one of payment, fulfillment, lifecycle")
        return self


class WritebackRule(_Strict):
    """Canonical status → the PrestaShop state to write: by ``key``, else the first state with ``flags``."""

    when: WritebackWhen
    key: StrictStr = Field(pattern=r"^PS_OS_[A-Z0-9_]+$")
    flags: StateFlags | None = None


class PrestaShopStatusRules(_Strict):
    """PrestaShop order states ↔ canonical status."""

    states: list[PrestaShopStateRule] = Field(min_length=1)
    unmapped: UnmappedPolicy = UnmappedPolicy.KEEP
    writeback: list[WritebackRule] = Field(default_factory=list)

    @field_validator("states")
    @classmethod
    def _unique_keys(cls, rules: list[PrestaShopStateRule]) -> list[PrestaShopStateRule]:
        seen: set[str] = set()
        for rule in rules:
            if rule.key is not None:
                if rule.key in seen:
                    raise ValueError(f"{rule.key} is mapped twice")
                seen.add(rule.key)
        return rules


class M3StatusRule(StatusTarget):
    """One M3 order status pattern → canonical status; the first matching rule wins.

    M3 statuses are two digits: the first is the least progressed part of the quantity, the second the
    most progressed. On the order head, ``ORSL`` is the lowest line status and ``ORST`` the highest.
    ``codes`` matches ``ORST`` exactly; ``low_min``/``low_max`` bound the first digit of ``ORSL`` (how far
    the least progressed line got); ``high_min``/``high_max`` bound the second digit of ``ORST`` (how far
    the most progressed quantity got). All given conditions must hold.
    """

    codes: list[Annotated[StrictStr, Field(pattern=r"^\d\d$")]] | None = None
    low_min: Annotated[StrictInt, Field(ge=0, le=9)] | None = None
    low_max: Annotated[StrictInt, Field(ge=0, le=9)] | None = None
    high_min: Annotated[StrictInt, Field(ge=0, le=9)] | None = None
    high_max: Annotated[StrictInt, Field(ge=0, le=9)] | None = None

    @model_validator(mode="after")
    def _has_condition(self) -> M3StatusRule:
        if all(
            value is None for value in (self.codes, self.low_min, self.low_max, self.high_min, self.high_max)
        ):
            raise ValueError("an M3 rule needs a condition: codes, low_min/low_max or high_min/high_max")
        return self


class M3StatusRules(_Strict):
    """Infor M3 order statuses (ORSL/ORST, order stop OBLC) → canonical status."""

    rules: list[M3StatusRule] = Field(min_length=1)
    order_stop: StatusTarget
    """Applied on top when ``OBLC`` is set and not ``0`` (the order is stopped)."""


class Transition(_Strict):
    """An explicit transition allowed besides moving forward along a dimension's order."""

    from_: list[StrictStr] = Field(alias="from", min_length=1)
    to: list[StrictStr] = Field(min_length=1)


class Progression(_Strict):
    """One dimension's forward order and its explicit exceptions (symbols are validated by the engine)."""

    order: list[StrictStr] = Field(min_length=1)
    transitions: list[Transition] = Field(default_factory=list)


class Progressions(_Strict):
    """How each status dimension may move: forward along ``order``, or by an explicit transition."""

    payment: Progression
    fulfillment: Progression
    lifecycle: Progression

    @model_validator(mode="after")
    def _symbols_exist(self) -> Progressions:
        for name, progression, enum in (
            ("payment", self.payment, PaymentStatus),
            ("fulfillment", self.fulfillment, FulfillmentStatus),
            ("lifecycle", self.lifecycle, Lifecycle),
        ):
            known = {member.value for member in enum} - {"UNKNOWN"}
            used = list(progression.order)
            for transition in progression.transitions:
                used += transition.from_ + transition.to
            for symbol in used:
                if symbol not in known:
                    raise ValueError(f"{name}: {symbol!r} is not one of {', '.join(sorted(known))}")
            if len(set(progression.order)) != len(progression.order):
                raise ValueError(f"{name}: order lists a symbol twice")
        return self


class StatusRules(_Strict):
    """The status section: source maps, write-back, and how statuses may move."""

    progressions: Progressions
    prestashop: PrestaShopStatusRules
    m3: M3StatusRules


# --- currency -------------------------------------------------------------------------------------------


class Rounding(StrEnum):
    """Rounding modes, named as the :mod:`decimal` module names them."""

    HALF_EVEN = "HALF_EVEN"
    HALF_UP = "HALF_UP"
    HALF_DOWN = "HALF_DOWN"
    UP = "UP"
    DOWN = "DOWN"
    CEILING = "CEILING"
    FLOOR = "FLOOR"

    @property
    def decimal_mode(self) -> str:
        """The :mod:`decimal` rounding constant."""
        return {
            "HALF_EVEN": ROUND_HALF_EVEN,
            "HALF_UP": ROUND_HALF_UP,
            "HALF_DOWN": ROUND_HALF_DOWN,
            "UP": ROUND_UP,
            "DOWN": ROUND_DOWN,
            "CEILING": ROUND_CEILING,
            "FLOOR": ROUND_FLOOR,
        }[self.value]


class RateSource(StrEnum):
    """Where an exchange rate may come from, in the order the rules file lists them."""

    PRESTASHOP = "prestashop"
    """The shop's ``currencies.conversion_rate`` (or the order's ``conversion_rate``)."""
    TABLE = "table"
    """``currency.rates`` in the rules file."""


class CurrencyRules(_Strict):
    """Conversion of document amounts to the base currency."""

    base_currency: StrictStr = Field(pattern=_ISO4217.pattern)
    sources: list[RateSource] = Field(min_length=1)
    rates: dict[StrictStr, RuleDecimal] = Field(default_factory=dict)
    """Base-currency units per one unit of the keyed currency."""
    rates_date: StrictStr | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")
    amount_scale: Annotated[StrictInt, Field(ge=0, le=6)] = 6
    rate_scale: Annotated[StrictInt, Field(ge=1, le=10)] = 10
    rounding: Rounding = Rounding.HALF_EVEN
    minor_units: dict[StrictStr, Annotated[StrictInt, Field(ge=0, le=4)]] = Field(default_factory=dict)
    """Currencies whose minor unit is not 2 decimals (JPY: 0, KWD: 3)."""

    @field_validator("rates")
    @classmethod
    def _rates(cls, rates: dict[str, Decimal]) -> dict[str, Decimal]:
        for code, rate in rates.items():
            if not _ISO4217.match(code):
                raise ValueError(f"{code!r} is not an ISO 4217 code (three capital letters)")
            if rate <= 0:
                raise ValueError(f"{code}: a rate must be positive, got {rate}")
        return rates

    @field_validator("minor_units")
    @classmethod
    def _minor(cls, units: dict[str, int]) -> dict[str, int]:
        for code in units:
            if not _ISO4217.match(code):
                raise ValueError(f"{code!r} is not an ISO 4217 code (three capital letters)")
        return units


# --- addresses ------------------------------------------------------------------------------------------


class PostcodeFormat(_Strict):
    """One accepted postcode shape: ``pattern`` is matched against the postcode with spaces and hyphens
    removed and letters upper-cased; ``format`` rebuilds it from the groups (``{1} {2}``)."""

    pattern: StrictStr
    format: StrictStr

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        if not pattern.startswith("^") or not pattern.endswith("$"):
            raise ValueError("anchor the pattern with ^ and $ so it matches the whole postcode")
        del compiled
        return pattern


class InvalidPolicy(StrEnum):
    """What a value that matches no known format does."""

    KEEP = "keep"
    """Keep the cleaned value (whitespace collapsed, upper-cased)."""
    INVALID = "invalid"
    """The message is invalid (reason ``invalid_postcode``)."""


class ErpFieldFitting(_Strict):
    """How address lines fit an ERP's fixed-width fields (M3 CUA1-CUA4: 4 fields of 36 characters)."""

    fields: Annotated[StrictInt, Field(ge=1, le=10)] = 4
    width: Annotated[StrictInt, Field(ge=10, le=200)] = 36


class TextCase(StrEnum):
    """Case applied to a free-text field after whitespace is collapsed."""

    KEEP = "keep"
    UPPER = "upper"


class AddressRules(_Strict):
    """Address standardisation and ERP field fitting."""

    country_aliases: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    """Extra country spellings (any case) → ISO 3166-1 alpha-2, on top of the built-in names."""
    prestashop_country_ids: dict[StrictInt, StrictStr] = Field(default_factory=dict)
    """PrestaShop ``id_country`` → alpha-2, for payloads that carry only the id."""
    subdivision_aliases: dict[StrictStr, dict[StrictStr, StrictStr]] = Field(default_factory=dict)
    """Per country, subdivision names (any case) → the ISO 3166-2 suffix (``US: {New York: NY}``)."""
    postcodes: dict[StrictStr, list[PostcodeFormat]] = Field(default_factory=dict)
    on_invalid_postcode: InvalidPolicy = InvalidPolicy.KEEP
    city_case: TextCase = TextCase.KEEP
    erp_fields: dict[StrictStr, ErpFieldFitting] = Field(default_factory=dict)
    """Per target (``m3``), the fixed-width address fields."""

    @field_validator("country_aliases", "prestashop_country_ids")
    @classmethod
    def _alpha2_values(cls, table: dict[object, str]) -> dict[object, str]:
        for key, code in table.items():
            if not _ALPHA2.match(code):
                raise ValueError(f"{key}: {code!r} is not an ISO 3166-1 alpha-2 code (two capital letters)")
        return table

    @field_validator("postcodes", "subdivision_aliases")
    @classmethod
    def _alpha2_keys(cls, table: dict[str, object]) -> dict[str, object]:
        for code in table:
            if not _ALPHA2.match(code):
                raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 code (two capital letters)")
        return table


# --- variants, enrichment, warehouses -------------------------------------------------------------------


class ItemNumberRule(_Strict):
    """How a SKU becomes an ERP item number when the product table has no explicit one."""

    source: Literal["table_then_sku", "table_only"] = "table_then_sku"
    case: TextCase = TextCase.UPPER
    prefix: StrictStr = ""
    max_length: Annotated[StrictInt, Field(ge=1, le=64)] = 15
    """M3 ITNO is 15 characters."""


class VariantRules(_Strict):
    """Variant resolution: (id_product, id_product_attribute) → SKU → ERP item number."""

    item_number: ItemNumberRule = Field(default_factory=ItemNumberRule)
    use_order_reference: StrictBool = True
    """When the table has no entry, use the reference the order row carries (PrestaShop copies the
    combination's reference onto the order row), if there is one."""


class EnrichmentMatch(_Strict):
    """Conditions of an enrichment rule; every given one must hold (omitted = any)."""

    shop: list[StrictStr] | None = None
    country: list[Annotated[StrictStr, Field(pattern=_ALPHA2.pattern)]] | None = None
    customer_group: list[StrictStr] | None = None


class EnrichmentSet(_Strict):
    """Values an enrichment rule sets."""

    cost_centre: StrictStr | None = None
    project: StrictStr | None = None
    order_type: StrictStr | None = None
    warehouse: StrictStr | None = None


class EnrichmentRule(_Strict):
    """Rules are read top-down; each field takes its value from the first matching rule that sets it,
    so put specific rules first and the defaults (no ``match``) last."""

    match: EnrichmentMatch = Field(default_factory=EnrichmentMatch)
    set: EnrichmentSet


class WarehouseRules(_Strict):
    """Warehouse mapping between PrestaShop and the ERP."""

    by_prestashop_warehouse: dict[StrictInt, StrictStr] = Field(default_factory=dict)
    """PrestaShop ``id_warehouse`` (advanced stock management) → ERP warehouse (M3 WHLO)."""
    to_prestashop_shops: dict[StrictStr, list[StrictStr]] = Field(default_factory=dict)
    """ERP warehouse → the shops whose stock it feeds (inventory write-back)."""


# --- validation and anomalies ---------------------------------------------------------------------------


class ValidationRules(_Strict):
    """Validation tolerances."""

    totals_tolerance: RuleDecimal = Decimal("0.01")
    """Largest accepted gap between the stated total and the recomputed one (order currency units)."""


class OrderValueCheck(_Strict):
    """Robust z-score of an order's value against the shop's recent orders."""

    enabled: StrictBool = True
    threshold: RuleDecimal = Decimal("3.5")
    window: Annotated[StrictInt, Field(ge=5, le=100_000)] = 500
    min_history: Annotated[StrictInt, Field(ge=3)] = 30


class QuantitySpikeCheck(_Strict):
    """A line quantity far above what that SKU usually sells per order."""

    enabled: StrictBool = True
    factor: RuleDecimal = Decimal(10)
    """Flag when quantity > factor times the median quantity of the SKU's recent lines."""
    absolute_max: RuleDecimal | None = None
    """Flag any line above this quantity regardless of history."""
    min_history: Annotated[StrictInt, Field(ge=1)] = 10


class PriceDeviationCheck(_Strict):
    """A unit price far from the catalogue price."""

    enabled: StrictBool = True
    max_relative_deviation: RuleDecimal = Decimal("0.5")


class StockDropCheck(_Strict):
    """A stock level falling by more than a share at once."""

    enabled: StrictBool = True
    max_relative_drop: RuleDecimal = Decimal("0.8")
    min_absolute_drop: RuleDecimal = Decimal(50)


class AnomalyRules(_Strict):
    """Anomaly checks and where flagged records go."""

    order_value: OrderValueCheck = Field(default_factory=OrderValueCheck)
    quantity_spike: QuantitySpikeCheck = Field(default_factory=QuantitySpikeCheck)
    price_deviation: PriceDeviationCheck = Field(default_factory=PriceDeviationCheck)
    stock_drop: StockDropCheck = Field(default_factory=StockDropCheck)
    review_codes: list[StrictStr] = Field(default_factory=list)
    """Anomaly codes that send an order to the review topic; other codes only flag the record."""
    review_topic: StrictStr = "review.order.v1"


# --- the file -------------------------------------------------------------------------------------------


class RulesFile(_Strict):
    """The whole rules file."""

    version: Literal[1]
    status: StatusRules
    currency: CurrencyRules
    address: AddressRules = Field(default_factory=AddressRules)
    variants: VariantRules = Field(default_factory=VariantRules)
    enrichment: list[EnrichmentRule] = Field(default_factory=list)
    warehouses: WarehouseRules = Field(default_factory=WarehouseRules)
    validation: ValidationRules = Field(default_factory=ValidationRules)
    anomalies: AnomalyRules = Field(default_factory=AnomalyRules)
