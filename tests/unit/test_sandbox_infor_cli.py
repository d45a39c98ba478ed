"""``psinfor sandbox infor``: the .ionapi file it writes works with a client written from the spec."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import httpx

from cli.sandbox_infor import add_infor_parser, prepare


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="psinfor sandbox")
    add_infor_parser(parser.add_subparsers())
    return parser.parse_args(["infor", *argv])


def test_cli_writes_a_usable_ionapi_file_and_prints_the_urls(tmp_path: Path) -> None:
    target = tmp_path / "conf" / "tenant.ionapi"
    args = _parse(["--tenant", "CLI_TST", "--ionapi-out", str(target), "--seed", "3", "--items", "20"])
    out = io.StringIO()
    server = prepare(args, out)
    try:
        server.start()
        document = json.loads(target.read_text())
        assert document["ti"] == "CLI_TST"
        assert document["pu"] == f"{server.base_url}/CLI_TST/as/"
        printed = out.getvalue()
        assert f"{document['pu']}{document['ot']}" in printed
        assert "/CLI_TST/M3/m3api-rest/v2/execute/" in printed
        with httpx.Client() as http:
            token = http.post(
                document["pu"] + document["ot"],
                data={"grant_type": "password", "username": document["saak"], "password": document["sask"]},
                auth=(document["ci"], document["cs"]),
            ).json()["access_token"]
            response = http.get(
                f"{document['iu']}/{document['ti']}/M3/m3api-rest/v2/execute/MMS200MI/GetItmBasic",
                params={"ITNO": "SKU-1001", "cono": 100, "divi": "AAA"},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert response.json()["results"][0]["records"][0]["ITDS"] == "Blue mug"
    finally:
        server.stop()
