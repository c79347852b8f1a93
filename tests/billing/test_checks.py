from billing.checks import stripe_configuration_check


def _ids(errors) -> list[str]:
    return [e.id for e in errors]


def test_it_is_quiet_when_billing_is_off(settings):
    settings.STRIPE_SECRET_KEY = settings.STRIPE_WEBHOOK_SECRET = ""
    assert stripe_configuration_check() == []


def test_it_fails_loudly_when_billing_is_on_but_unconfigured(settings):
    settings.STRIPE_SECRET_KEY = "sk_live_x"
    settings.STRIPE_WEBHOOK_SECRET = ""
    settings.STRIPE_PRICE_STARTER, settings.STRIPE_PRICE_PRO, settings.STRIPE_PRICE_ENTERPRISE = (
        "price_s",
        "",
        "",
    )
    errors = stripe_configuration_check()
    assert _ids(errors) == ["billing.E002", "billing.E003"]
    assert "STRIPE_PRICE_PRO, STRIPE_PRICE_ENTERPRISE" in errors[1].msg


def test_it_rejects_a_webhook_secret_without_a_key(settings):
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = "whsec_x"
    assert _ids(stripe_configuration_check()) == ["billing.E001"]


def test_it_rejects_two_tiers_sharing_a_price(settings):
    settings.STRIPE_SECRET_KEY, settings.STRIPE_WEBHOOK_SECRET = "sk_x", "whsec_x"
    settings.STRIPE_PRICE_STARTER, settings.STRIPE_PRICE_PRO, settings.STRIPE_PRICE_ENTERPRISE = (
        "p1",
        "p1",
        "p2",
    )
    assert _ids(stripe_configuration_check()) == ["billing.E004"]


def test_it_accepts_a_complete_configuration(settings):
    settings.STRIPE_SECRET_KEY, settings.STRIPE_WEBHOOK_SECRET = "sk_x", "whsec_x"
    settings.STRIPE_PRICE_STARTER, settings.STRIPE_PRICE_PRO, settings.STRIPE_PRICE_ENTERPRISE = (
        "p1",
        "p2",
        "p3",
    )
    assert stripe_configuration_check() == []
