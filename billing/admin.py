from django.contrib import admin, messages

from billing import services
from billing.models import BillingAccount, StripeEvent, UsageReport


@admin.register(BillingAccount)
class BillingAccountAdmin(admin.ModelAdmin):
    list_display = [
        "tenant",
        "stripe_customer_id",
        "stripe_subscription_id",
        "subscription_status",
        "current_period_end",
        "grace_until",
        "suspended_at",
    ]
    list_filter = ["subscription_status"]
    search_fields = ["tenant__slug", "stripe_customer_id", "stripe_subscription_id"]
    # Stripe is the source of truth: these fields change through webhooks, not by hand.
    readonly_fields = [f.name for f in BillingAccount._meta.fields]


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin):
    list_display = ["event_id", "type", "tenant", "status", "deliveries", "received_at", "processed_at"]
    list_filter = ["status", "type"]
    search_fields = ["event_id", "tenant__slug"]
    readonly_fields = [f.name for f in StripeEvent._meta.fields]
    actions = ["process_again"]

    @admin.action(description="Process failed events again")
    def process_again(self, request, queryset):
        failed = list(queryset.filter(status=StripeEvent.Status.FAILED))
        for event in failed:
            services.stripe_event_retry(event=event, actor=request.user)
        self.message_user(request, f"{len(failed)} failed event(s) queued again.", messages.SUCCESS)

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(UsageReport)
class UsageReportAdmin(admin.ModelAdmin):
    list_display = ["tenant", "day", "metric", "quantity", "status", "attempts", "sent_at"]
    list_filter = ["status", "metric", "day"]
    search_fields = ["tenant__slug", "identifier"]
    readonly_fields = [f.name for f in UsageReport._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
