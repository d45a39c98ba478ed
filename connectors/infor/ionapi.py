"""The ``.ionapi`` credentials file of an ION API authorized app, loaded once and never printed.

The file is JSON with short keys (ti, cn, dt, ci, cs, iu, pu, oa, ot, or, ev, v, saak, sask, sc).
Every URL the client uses derives from it: token endpoint ``pu + ot``, revocation ``pu + or``,
API base ``iu + "/" + ti`` (``pu`` already carries ``/{TENANT}/as/``; ``iu`` carries no tenant).
Nothing is hard-coded, so on-premises STS paths (``/InforIntSTS/connect/token``) work too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from pipeline.errors import ConfigError

REQUIRED_KEYS = ("ti", "ci", "cs", "iu", "pu", "ot")
"""Needed for any token request; ``saak``/``sask`` are needed on top for the password grant."""


class IonApiCredentials(BaseModel):
    """One ``.ionapi`` file. ``cs`` and ``sask`` are secrets: ``repr`` and ``str`` mask them.

    Unknown keys are kept in ``model_extra`` (new Infor releases add keys); ``dt``, ``ev`` and ``v``
    are opaque and only kept for completeness.
    """

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    ti: str = Field(min_length=1, description="Tenant identifier, e.g. ACME_TST.")
    cn: str = Field("", description="Authorized app (client) name.")
    dt: str = Field("", description="Undocumented, opaque.")
    ci: str = Field(min_length=1, description="OAuth client id, TENANT~random.")
    cs: SecretStr = Field(description="OAuth client secret.")
    iu: str = Field(min_length=1, description="ION API gateway base URL, without the tenant.")
    pu: str = Field(min_length=1, description="Authorization server base URL, with /{TENANT}/as/.")
    oa: str = Field("authorization.oauth2", description="Authorization endpoint, relative to pu.")
    ot: str = Field(min_length=1, description="Token endpoint, relative to pu.")
    or_: str = Field("revoke_token.oauth2", alias="or", description="Revocation endpoint, relative to pu.")
    ev: str = Field("", description="Environment version, opaque.")
    v: str = Field("", description="File format version.")
    saak: str | None = Field(None, description="Service account access key (the OAuth username).")
    sask: SecretStr | None = Field(None, description="Service account secret key (the OAuth password).")
    sc: tuple[str, ...] = Field((), description="Scopes some files carry, e.g. Infor-ION.")

    @property
    def token_url(self) -> str:
        """``pu + ot``: where tokens are requested."""
        return _join(self.pu, self.ot)

    @property
    def revoke_url(self) -> str:
        """``pu + or``: where tokens are revoked on shutdown."""
        return _join(self.pu, self.or_)

    @property
    def authorization_url(self) -> str:
        """``pu + oa`` (interactive grants only; the pipeline never uses it)."""
        return _join(self.pu, self.oa)

    @property
    def api_base(self) -> str:
        """``iu + "/" + ti``: every gateway path (``/M3/m3api-rest/v2/...``) hangs below this."""
        return self.iu.rstrip("/") + "/" + self.ti

    @property
    def has_service_account(self) -> bool:
        """True when the file was downloaded with "Create Service Account" (saak and sask present)."""
        return bool(self.saak) and self.sask is not None and bool(self.sask.get_secret_value())


def _join(base: str, path: str) -> str:
    if not base.endswith("/") and not path.startswith("/"):
        return base + "/" + path
    return base + path


def parse_ionapi(text: str | bytes, *, source: str = ".ionapi") -> IonApiCredentials:
    """Credentials from the file's content, or a ConfigError naming the missing/bad keys (never values)."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: not a JSON .ionapi file ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: not a JSON object; download the credentials again from the API Gateway")
    return ionapi_from_mapping(data, source=source)


def ionapi_from_mapping(data: Mapping[str, Any], *, source: str = ".ionapi") -> IonApiCredentials:
    """Credentials from an already decoded mapping (same checks as :func:`parse_ionapi`)."""
    missing = [key for key in REQUIRED_KEYS if not data.get(key)]
    if missing:
        raise ConfigError(
            f"{source}: missing required key(s) {', '.join(missing)}; download the credentials of a "
            "Backend Service authorized app from the ION API Gateway"
        )
    try:
        return IonApiCredentials.model_validate(dict(data))
    except ValidationError as exc:
        keys = sorted({str(error["loc"][0]) for error in exc.errors() if error["loc"]})
        raise ConfigError(f"{source}: malformed key(s) {', '.join(keys)} (values hidden)") from None


def load_ionapi(path: Path | str) -> IonApiCredentials:
    """Read and check a ``.ionapi`` file; unreadable or malformed files raise one clear ConfigError."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the .ionapi file ({exc.strerror or exc})") from None
    return parse_ionapi(text, source=str(file))
