"""DigitalOcean DNS (API v2, https://docs.digitalocean.com/reference/api/api-reference/#tag/Domains
and #tag/Domain-Records): a zone is a "domain" (`GET /v2/domains/{name}`), records live under
`/v2/domains/{name}/records` with `name` relative to the zone ("@" for the apex) and `data`
the TXT value; errors are `{"id", "message"}`."""

from __future__ import annotations

from typing import Any

from .base import DnsProvider, TxtRecord, candidate_zones


class DigitalOceanDns(DnsProvider):
    name = "digitalocean"
    default_base_url = "https://api.digitalocean.com/v2"
    txt_ttl = 30  # DigitalOcean's minimum

    def verify(self) -> None:
        path = "/domains"
        response = self._request("GET", path, params={"per_page": 1})
        if not response.ok:
            raise self._fail("GET", path, response)

    def find_zone(self, name: str) -> tuple[str, str]:
        for zone in candidate_zones(name):
            path = f"/domains/{self._segment(zone)}"
            response = self._request("GET", path)
            if response.status_code == 404:
                continue
            if not response.ok:
                raise self._fail("GET", path, response)
            return zone, zone
        raise self._error(f"no domain in this account holds {name}", permanent=True, status=404)

    def create_txt(self, *, zone: str, zone_id: str, name: str, value: str) -> TxtRecord:
        relative = "@" if name == zone else name.removesuffix("." + zone)
        path = f"/domains/{self._segment(zone_id)}/records"
        body = {"type": "TXT", "name": relative, "data": value, "ttl": self.txt_ttl}
        response = self._request("POST", path, json=body)
        if not response.ok:
            raise self._fail("POST", path, response)
        record = (self._json(response) or {}).get("domain_record") or {}
        if "id" not in record:
            raise self._error(f"POST {path} answered without a domain_record id", permanent=False)
        return TxtRecord(zone=zone, zone_id=zone_id, record_id=str(record["id"]), name=name, value=value)

    def delete_txt(self, record: TxtRecord) -> None:
        path = f"/domains/{self._segment(record.zone_id)}/records/{self._segment(record.record_id)}"
        response = self._request("DELETE", path)
        if not response.ok and response.status_code != 404:
            raise self._fail("DELETE", path, response)

    def _error_detail(self, payload: Any) -> str | None:
        if isinstance(payload, dict) and payload.get("message"):
            return f"{payload.get('id', 'error')}: {payload['message']}"
        return None
