"""Cloudflare DNS (API v4, https://developers.cloudflare.com/api/resources/dns/): zones are found
by name (`GET /zones?name=example.com`), records live under `/zones/{zone_id}/dns_records` with a
fully qualified `name` and the TXT value in `content`. Every answer is the envelope
`{"success", "errors": [{"code", "message"}], "messages", "result"}`; a token is checked with
`GET /user/tokens/verify`."""

from __future__ import annotations

from typing import Any

from .base import DnsProvider, TxtRecord, candidate_zones


class CloudflareDns(DnsProvider):
    name = "cloudflare"
    default_base_url = "https://api.cloudflare.com/client/v4"
    txt_ttl = 60  # the lowest a non-Enterprise zone takes (1 would mean "automatic", 300 s)

    def verify(self) -> None:
        path = "/user/tokens/verify"
        result = self._result("GET", path)
        if not isinstance(result, dict) or result.get("status") != "active":
            status = result.get("status") if isinstance(result, dict) else "unknown"
            raise self._error(f"the API token is {status}, not active", permanent=True)

    def find_zone(self, name: str) -> tuple[str, str]:
        for zone in candidate_zones(name):
            found = self._result("GET", "/zones", params={"name": zone, "per_page": 5})
            match = next((z for z in found or [] if isinstance(z, dict) and z.get("name") == zone), None)
            if match and match.get("id"):
                return zone, str(match["id"])
        raise self._error(f"no zone in this account holds {name}", permanent=True, status=404)

    def create_txt(self, *, zone: str, zone_id: str, name: str, value: str) -> TxtRecord:
        path = f"/zones/{self._segment(zone_id)}/dns_records"
        body = {"type": "TXT", "name": name, "content": value, "ttl": self.txt_ttl}
        result = self._result("POST", path, json=body)
        if not isinstance(result, dict) or not result.get("id"):
            raise self._error(f"POST {path} answered without a record id", permanent=False)
        return TxtRecord(zone=zone, zone_id=zone_id, record_id=str(result["id"]), name=name, value=value)

    def delete_txt(self, record: TxtRecord) -> None:
        path = f"/zones/{self._segment(record.zone_id)}/dns_records/{self._segment(record.record_id)}"
        response = self._request("DELETE", path)
        if response.status_code == 404:
            return
        if not response.ok or not (self._json(response) or {}).get("success"):
            raise self._fail("DELETE", path, response)

    def _result(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        payload = self._json(response)
        if not response.ok or not isinstance(payload, dict) or not payload.get("success"):
            raise self._fail(method, path, response)
        return payload.get("result")

    def _error_detail(self, payload: Any) -> str | None:
        errors = payload.get("errors") if isinstance(payload, dict) else None
        if errors:
            return "; ".join(f"{e.get('code', '?')} {e.get('message', '')}".strip() for e in errors)
        return None
