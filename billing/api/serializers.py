from rest_framework import serializers

from chom.tiers import TIER_CHOICES


class CheckoutSerializer(serializers.Serializer):
    tier = serializers.ChoiceField(choices=TIER_CHOICES)


class RedirectSerializer(serializers.Serializer):
    url = serializers.URLField()


class SubscriptionSerializer(serializers.Serializer):
    id = serializers.CharField(source="stripe_subscription_id")
    status = serializers.CharField(source="subscription_status")
    current_period_end = serializers.DateTimeField(allow_null=True)
    cancel_at_period_end = serializers.BooleanField()


class DunningSerializer(serializers.Serializer):
    past_due_since = serializers.DateTimeField(allow_null=True)
    grace_until = serializers.DateTimeField(allow_null=True)
    suspended_at = serializers.DateTimeField(allow_null=True)


class UpcomingInvoiceSerializer(serializers.Serializer):
    amount_due = serializers.IntegerField(help_text="In the currency's smallest unit (cents).")
    currency = serializers.CharField()
    next_payment_attempt = serializers.DateTimeField(allow_null=True)
    period_end = serializers.DateTimeField(allow_null=True)


class BillingSerializer(serializers.Serializer):
    tier = serializers.CharField()
    status = serializers.CharField()
    limits = serializers.DictField()
    usage = serializers.DictField()
    over_limits = serializers.ListField(child=serializers.CharField())
    subscription = SubscriptionSerializer(allow_null=True)
    dunning = DunningSerializer(allow_null=True)
    upcoming_invoice = UpcomingInvoiceSerializer(allow_null=True)
    warnings = serializers.ListField(child=serializers.CharField())


class InvoiceSerializer(serializers.Serializer):
    id = serializers.CharField()
    number = serializers.CharField()
    status = serializers.CharField()
    amount_due = serializers.IntegerField()
    amount_paid = serializers.IntegerField()
    currency = serializers.CharField()
    created = serializers.DateTimeField(allow_null=True)
    period_end = serializers.DateTimeField(allow_null=True)
    hosted_invoice_url = serializers.CharField()
    invoice_pdf = serializers.CharField()


class InvoiceListSerializer(serializers.Serializer):
    results = InvoiceSerializer(many=True)
