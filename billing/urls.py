"""Non-API routes of billing: the Stripe webhook and the staff dashboard page."""

from django.urls import path

from billing import views, webhooks

urlpatterns = [
    path("webhooks/stripe", webhooks.stripe_webhook, name="stripe-webhook"),
    path("billing/", views.billing_dashboard, name="billing-dashboard"),
]
