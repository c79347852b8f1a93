"""A site's deploy key for private repositories (POST creates it, or rotates it) and the git host
key pinned on the first SSH clone (DELETE forgets it, so the next deploy pins the server's key)."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from chom.api.permissions import TENANT, is_staff_request
from chom.http import client_ip
from sites import selectors
from sites.api.serializers import DeployKeySerializer, deploy_key_data
from sites.deploy_keys import site_deploy_key_create, site_git_host_key_clear


class SiteDeployKeyView(APIView):
    """The answer holds the public key only: the private half is never returned."""

    audience = TENANT  # as a deploy: the tenant's own request

    @extend_schema(request=None, responses={200: DeployKeySerializer})
    def post(self, request, pk: int):
        visible = selectors.sites_visible(tenant=request.auth.tenant, staff=is_staff_request(request))
        site = get_object_or_404(visible, pk=pk)
        site = site_deploy_key_create(site=site, actor=request.user, source_ip=client_ip(request))
        return Response(DeployKeySerializer(deploy_key_data(site)).data)


class SiteGitHostKeyView(APIView):
    """For a git server whose key really changed: a deploy refuses any key but the pinned one."""

    audience = TENANT

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, pk: int):
        visible = selectors.sites_visible(tenant=request.auth.tenant, staff=is_staff_request(request))
        site = get_object_or_404(visible, pk=pk)
        site_git_host_key_clear(site=site, actor=request.user, source_ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
