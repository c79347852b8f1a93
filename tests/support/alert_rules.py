"""Test copies of CHOM's alert rules: the same expressions and labels, `for` in seconds, so an e2e
journey sees an alert fire within seconds of its fault. promtool's unit tests
(deploy/observability/alert-rules*.test.yml) cover the real durations."""

from pathlib import Path

import yaml

ALERT_RULES = Path(__file__).resolve().parents[2] / "deploy" / "observability" / "alert-rules.yml"


def fast_rules(*, for_seconds: int = 2, path: Path = ALERT_RULES) -> str:
    """alert-rules.yml with every rule's `for` set to FOR_SECONDS (rules without one keep none)."""
    document = yaml.safe_load(path.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = f"{for_seconds}s"
    return yaml.safe_dump(document, sort_keys=False)
