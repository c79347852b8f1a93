"""The dashboard's alert forms: the filters of the alert pages and a silence's duration."""

from datetime import timedelta

from django import forms

from observability.models import Alert

UNITS = {"minutes": 1, "hours": 60, "days": 1440}


class AlertFilterForm(forms.Form):
    name = forms.CharField(required=False, max_length=100)
    severity = forms.ChoiceField(required=False, choices=[("", "any"), *Alert.Severity.choices])
    tenant = forms.SlugField(required=False, max_length=50, help_text="slug")
    source = forms.ChoiceField(
        required=False, choices=[("", "any"), ("alertmanager", "Alertmanager"), ("chom", "CHOM")]
    )
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def filters(self) -> dict:
        """The valid filters: an invalid field is left out (and shown with its error)."""
        self.is_valid()
        return {name: value for name, value in self.cleaned_data.items() if value}


class SilenceForm(forms.Form):
    amount = forms.IntegerField(min_value=1, max_value=43200, initial=1)
    unit = forms.ChoiceField(choices=[(u, u) for u in UNITS], initial="hours")
    comment = forms.CharField(required=False, max_length=500)

    def duration(self) -> timedelta:
        return timedelta(minutes=self.cleaned_data["amount"] * UNITS[self.cleaned_data["unit"]])
