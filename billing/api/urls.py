from django.urls import path

from billing.api import views

urlpatterns = [
    path("billing", views.BillingView.as_view(), name="api-billing"),
    path("billing/checkout", views.CheckoutView.as_view(), name="api-billing-checkout"),
    path("billing/portal", views.PortalView.as_view(), name="api-billing-portal"),
    path("billing/invoices", views.InvoiceListView.as_view(), name="api-billing-invoices"),
]
