"""Deploy hooks in the site API: `hooks: {"build": [argv...], "release": [argv...]}`."""

from rest_framework import serializers

HOOK_MAX_ARGS = 50
HOOK_MAX_ARG_CHARS = 1000


class HookArgvField(serializers.ListField):
    """One hook: an argv list run as the site user, never through a shell; [] clears it."""

    def __init__(self, **kwargs):
        child = serializers.CharField(max_length=HOOK_MAX_ARG_CHARS, allow_blank=True, trim_whitespace=False)
        super().__init__(child=child, max_length=HOOK_MAX_ARGS, allow_empty=True, **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, str):
            raise serializers.ValidationError(
                'A list of arguments, e.g. ["php", "artisan", "migrate"]; no shell.'
            )
        value = super().to_internal_value(data)
        if value and not value[0]:
            raise serializers.ValidationError("The command (first argument) may not be empty.")
        return value


class HooksSerializer(serializers.Serializer):
    build = HookArgvField(
        required=False,
        help_text="Runs in the new release after CHOM's build steps, before it goes live; failing "
        "leaves the previous release serving.",
    )
    release = HookArgvField(
        required=False,
        help_text="Runs in current/ right after the switch; failing switches back to the previous release.",
    )


def hooks_data(site) -> dict:
    return {"build": list(site.build_command or []), "release": list(site.release_command or [])}


def hooks_changes(hooks: dict) -> dict:
    """The model fields a validated `hooks` object changes."""
    fields = {"build": "build_command", "release": "release_command"}
    return {fields[name]: argv for name, argv in hooks.items()}
