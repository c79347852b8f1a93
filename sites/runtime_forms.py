"""Dashboard forms of a site's runtime controls (cron jobs, workers, redirects, headers, basic-auth
users, PHP settings). A form only turns what a person typed into the API's request body and checks
it with the API's own write serializer; the services decide the rest (sites/cron_jobs.py,
sites/workers.py, sites/runtime.py). `validated` is the serializer's validated data."""

from django import forms

from chom.errors import ApplicationError
from chom.forms import drf_messages
from sites.api.cron_jobs import CronJobWriteSerializer
from sites.api.runtime import (
    BasicAuthUserSerializer,
    PhpSettingsWriteSerializer,
    ResponseHeaderSerializer,
    SiteRedirectSerializer,
)
from sites.api.workers import WorkerWriteSerializer
from sites.models import Redirect, Site, Worker
from sites.runtime import REDIRECT_STATUSES, php_settings_check
from sites.runtime_configs import PHP_SETTINGS
from sites.types import site_type

COMMAND_HELP = (
    "One argument per line, exactly as typed: no quotes, no shell (so no pipes, redirections or "
    "$VARIABLES); spaces are part of the argument. Runs as the site user in current/."
)


def argv_lines(text: str) -> list[str]:
    """TEXT (a textarea: one argument per line) as an argv. The line breaks a browser sends
    (CRLF) and those ending the text are not arguments; a blank line between arguments is refused
    rather than sent as an empty argument nobody meant."""
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    blank = next((n for n, line in enumerate(lines, 1) if line == ""), None)
    if blank is not None:
        raise forms.ValidationError(f"Line {blank} is blank: one argument per line, no blank lines.")
    return lines


class ApiCheckedForm(forms.Form):
    """Checks its body with SERIALIZER; the serializer's errors are shown on the field they
    concern (FIELD_OF maps the API's field names to this form's)."""

    serializer = None
    FIELD_OF: dict[str, str] = {}

    def body(self, data: dict) -> dict:
        return data

    def full_clean(self) -> None:
        """Each error names its field: the site page has several forms and shows a refusal above
        them all ("Command: This field is required.")."""
        super().full_clean()
        for name, errors in list(self._errors.items()):
            if name in self.fields:
                self._errors[name] = self.error_class([f"{self[name].label}: {e}" for e in errors])

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        checked = self.serializer(data=self.body(data))
        if not checked.is_valid():
            for field, detail in checked.errors.items():
                name = self.FIELD_OF.get(field, field)
                self.add_error(name if name in self.fields else None, drf_messages(detail))
            return data
        self.validated = dict(checked.validated_data)
        return data


class CronJobForm(ApiCheckedForm):
    serializer = CronJobWriteSerializer

    schedule = forms.CharField(
        max_length=100,
        help_text="Five fields (minute hour day-of-month month day-of-week), or @hourly, @daily, "
        "@weekly, @monthly, @yearly.",
        widget=forms.TextInput(attrs={"placeholder": "*/5 * * * *", "autocomplete": "off"}),
    )
    command = forms.CharField(
        strip=False, help_text=COMMAND_HELP, widget=forms.Textarea(attrs={"rows": 3, "cols": 40})
    )

    def clean_command(self) -> list[str]:
        return argv_lines(self.cleaned_data["command"])


class WorkerForm(ApiCheckedForm):
    serializer = WorkerWriteSerializer

    name = forms.CharField(
        max_length=40,
        help_text="Lower-case letters, digits and -, starting with a letter.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    command = forms.CharField(
        strip=False, help_text=COMMAND_HELP, widget=forms.Textarea(attrs={"rows": 3, "cols": 40})
    )
    processes = forms.IntegerField(min_value=1, max_value=1000, initial=1)
    restart = forms.ChoiceField(
        choices=Worker.Restart.choices,
        initial=Worker.Restart.ALWAYS,
        help_text="always: also after a clean exit; on-failure: only after a crash or a kill.",
    )

    def clean_command(self) -> list[str]:
        return argv_lines(self.cleaned_data["command"])


class EnabledForm(forms.Form):
    """The enable/disable buttons: the state wanted, not a flip (a double click changes nothing)."""

    enabled = forms.TypedChoiceField(
        choices=[("true", "Enable"), ("false", "Disable")], coerce=lambda v: v == "true"
    )


class RedirectForm(ApiCheckedForm):
    serializer = SiteRedirectSerializer
    FIELD_OF = {"from": "source", "to": "destination", "status": "status_code"}

    source = forms.CharField(
        label="From",
        max_length=500,
        help_text="A path such as /old (a trailing / is dropped).",
        widget=forms.TextInput(attrs={"placeholder": "/old", "autocomplete": "off"}),
    )
    match = forms.ChoiceField(
        choices=Redirect.Match.choices,
        initial=Redirect.Match.EXACT,
        help_text="prefix: every path below it goes to the one target.",
    )
    destination = forms.CharField(
        label="To",
        max_length=2000,
        help_text="A path (/new) or an http(s) URL; write $ as %24.",
        widget=forms.TextInput(attrs={"placeholder": "https://example.com/new", "autocomplete": "off"}),
    )
    status_code = forms.TypedChoiceField(
        label="Status", choices=[(s, s) for s in REDIRECT_STATUSES], coerce=int, initial=301
    )
    preserve_query = forms.BooleanField(label="Keep the query string", required=False, initial=True)

    def body(self, data: dict) -> dict:
        return {
            "from": data["source"],
            "match": data["match"],
            "to": data["destination"],
            "status": data["status_code"],
            "preserve_query": data["preserve_query"],
        }


class HeaderForm(ApiCheckedForm):
    serializer = ResponseHeaderSerializer

    name = forms.CharField(
        label="Header",
        max_length=100,
        help_text="Letters, digits and -.",
        widget=forms.TextInput(attrs={"placeholder": "X-Robots-Tag", "autocomplete": "off"}),
    )
    value = forms.CharField(
        max_length=2000,
        required=False,
        strip=False,
        help_text="Printable ASCII, without $.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )


class BasicAuthForm(ApiCheckedForm):
    """Adds a user to a path's realm, or changes its password. The password is never shown again,
    not even after a refusal."""

    serializer = BasicAuthUserSerializer

    path = forms.CharField(
        max_length=500,
        initial="/",
        help_text="/ for the whole site, or a path prefix such as /admin.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    username = forms.CharField(max_length=64, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    password = forms.CharField(
        max_length=200,
        strip=False,
        help_text="8 to 72 bytes; CHOM keeps only its bcrypt hash.",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}, render_value=False),
    )


class PhpSettingsForm(ApiCheckedForm):
    """Every allowed setting at once: a value sets it, a blank one puts CHOM's default back."""

    serializer = PhpSettingsWriteSerializer
    HELP = {
        "memory_limit": 'A size such as "512M" or "1G"; CHOM\'s default: 256M.',
        "upload_max_filesize": 'A size such as "64M".',
        "post_max_size": "A size, at least upload_max_filesize.",
        "max_execution_time": "Seconds.",
        "max_input_vars": "A whole number.",
    }

    def __init__(self, *args, site: Site, **kwargs):
        kwargs.setdefault("initial", {name: str(v) for name, v in (site.php_settings or {}).items()})
        super().__init__(*args, **kwargs)
        self.site = site
        for name in PHP_SETTINGS:
            self.fields[name] = forms.CharField(
                max_length=20,
                required=False,
                help_text=self.HELP[name] + " Blank: CHOM's default.",
                widget=forms.TextInput(attrs={"autocomplete": "off"}),
            )

    def body(self, data: dict) -> dict:
        return {"settings": {name: data[name] or None for name in PHP_SETTINGS}}

    def clean(self) -> dict:
        """The service's own check of each value (sites/runtime.py), run here too so that a refusal
        names the setting: the service sums several up as "Some PHP settings are invalid."."""
        data = super().clean()
        if self.errors:
            return data
        try:
            php_settings_check(site=self.site, settings=self.validated["settings"])
        except ApplicationError as exc:
            for name, messages in exc.fields.items():
                self.add_error(name if name in self.fields else None, messages)
        return data


def site_control_forms(site: Site) -> dict[str, forms.Form]:
    """The site page's empty add forms; each labels its fields with ids of its own."""
    found = {
        "cron": CronJobForm(auto_id="cron-new-%s"),
        "worker": WorkerForm(auto_id="worker-new-%s"),
        "redirect": RedirectForm(auto_id="redirect-new-%s"),
        "header": HeaderForm(auto_id="header-new-%s"),
        "basic_auth": BasicAuthForm(auto_id="basic-auth-new-%s"),
    }
    if site_type(site.type).uses_php:
        found["php"] = PhpSettingsForm(site=site, auto_id="php-setting-%s")
    return found
