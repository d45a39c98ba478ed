"""The tenant values the sinks take from the settings (PSINFOR_INFOR__*, PSINFOR_PRESTASHOP__*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from pipeline.settings import InforSettings, PrestaShopSettings
from sinks.infor_customers import InforSinkOptions
from sinks.prestashop_target import shop_rate_policy


def test_infor_sink_options_follow_the_settings() -> None:
    infor = InforSettings(
        ionapi_path=Path("tenant.ionapi"),
        cono="100",
        order_type="SHP",
        customer_template="B2C",
        customer_number_prefix="WS",
        shipping_charge_id="FRT",
        wrapping_charge_id="GFT",
        requests_per_minute=1200,
    )
    options = InforSinkOptions.from_settings(infor, shop_id=2)
    assert options.defaults.order_type == "SHP"
    assert options.defaults.customer_template == "B2C"
    assert options.defaults.shipping_charge_id == "FRT"
    assert options.wrapping_charge_id == "GFT"
    assert options.customer_number_prefix == "WS"
    assert options.default_shop_id == "2"
    assert options.quota.ceiling == 1200 / 60.0


def test_without_infor_settings_the_documented_defaults_apply() -> None:
    options = InforSinkOptions.from_settings(None)
    assert options.defaults.order_type == "WEB"
    assert options.customer_number_prefix == "PS"
    assert options.defaults.shipping_charge_id is None


def test_the_shop_key_is_paced_at_the_configured_rate() -> None:
    shop = PrestaShopSettings(
        base_url="http://shop.test", ws_key=SecretStr("K" * 32), requests_per_second=7.5
    )
    assert shop_rate_policy(shop).ceiling == 7.5
    assert shop.send_email is False
