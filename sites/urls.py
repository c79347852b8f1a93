from django.urls import path

from sites import views

urlpatterns = [
    path("", views.site_list, name="site-list"),
    path("<int:pk>/", views.site_detail, name="site-detail"),
]
