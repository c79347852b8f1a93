import pytest

from sites.domains import InvalidDomain, normalize_domain


@pytest.mark.parametrize(
    "value,expected",
    [
        ("example.com", "example.com"),
        ("Example.COM.", "example.com"),
        ("  shop.example.co.uk ", "shop.example.co.uk"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("a-b.example.test", "a-b.example.test"),
        ("a" * 63 + ".example", "a" * 63 + ".example"),
    ],
)
def test_it_normalises_valid_domains(value, expected):
    assert normalize_domain(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "example.com;rm -rf /",
        "../etc/passwd",
        "..",
        "example.com/../x",
        "$(reboot).example.com",
        "`id`.example.com",
        "*.example.com",
        "127.0.0.1",
        "::1",
        "localhost",
        "-bad.example.com",
        "bad-.example.com",
        "a..example.com",
        "a" * 64 + ".example",
        ("a" * 60 + ".") * 4 + "example.com",
        "exa mple.com",
        "example.123",
        "",
        "example.com\nevil.com",
        "user@example.com",
        "example.com:8080",
        "ex'ample.com",
    ],
)
def test_it_rejects_invalid_domains(value):
    with pytest.raises(InvalidDomain):
        normalize_domain(value)
