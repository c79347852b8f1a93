"""Private repositories over SSH: the site's deploy key (ed25519, OpenSSH formats) and the git
host's key, pinned on the first successful clone.

The private half is kept encrypted (Site.deploy_key_private) and travels to the VPS only inside
the release-create payload (stdin, masked in every log); the agent writes it into the site's home
as the site user, mode 0600. The host key is pinned from what ssh saw on the first clone (the VPS's
own view of the git server, `StrictHostKeyChecking=accept-new` into an empty file) and from then
on ssh accepts nothing else."""

import base64
import binascii
import hashlib
import re

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from chom.operations import OperationError
from fleet.remote.agent_client import AgentError
from sites.models import Site
from sites.repositories import repository_endpoint, repository_is_ssh

# A known_hosts line as ssh writes it with HashKnownHosts=no: "host[,host] type base64", the host
# "[name]:port" off port 22.
KNOWN_HOSTS_LINE_RE = re.compile(
    r"(?P<hosts>[A-Za-z0-9.:\[\],-]{1,300}) (?P<type>(ssh|ecdsa|sk)-[A-Za-z0-9@.-]{1,60})"
    r" (?P<blob>[A-Za-z0-9+/]+={0,2})"
)
PUBLIC_KEY_COMMENT_MAX = 100


def deploy_key_generate(*, comment: str) -> tuple[str, str]:
    """A new ed25519 key: (private key in OpenSSH format, public key line with COMMENT)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()
    public = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    comment = re.sub(r"[^A-Za-z0-9@._-]", "", comment)[:PUBLIC_KEY_COMMENT_MAX]
    return private, f"{public} {comment}".strip()


def key_fingerprint(key_type_and_blob: str) -> str:
    """SHA256:… of "type base64 [comment]", as `ssh-keygen -lf` and GitHub print it."""
    blob = base64.b64decode(key_type_and_blob.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def known_hosts_entry(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def host_key_lines_for(url: str, lines: list) -> list[str]:
    """The lines of LINES (what the agent read back from the site's known_hosts) that are well
    formed keys of URL's host: the site user could have written anything into that file, and a
    line for another host must never become this repository's pin."""
    host, port = repository_endpoint(url)
    wanted = known_hosts_entry(host, port)
    kept = []
    for line in lines:
        match = KNOWN_HOSTS_LINE_RE.fullmatch(line.strip()) if isinstance(line, str) else None
        if match is None or wanted not in match["hosts"].lower().split(","):
            continue
        try:
            base64.b64decode(match["blob"], validate=True)
        except binascii.Error:
            continue
        kept.append(f"{wanted} {match['type']} {match['blob']}")
    return sorted(set(kept))


def git_ssh_source(site: Site) -> dict | None:
    """The `ssh` part of SITE's git source: its deploy key and the pinned known_hosts lines (empty
    until the first clone pins them). None for a repository that is not reached over SSH."""
    if not repository_is_ssh(site.repository_url):
        return None
    if not site.deploy_key_private:
        raise OperationError(
            f"The repository {site.repository_url} is reached over SSH and this site has no deploy key: "
            f"create one (POST /api/v1/sites/{site.pk}/deploy-key), add its public key to the "
            "repository's deploy keys, then deploy again."
        )
    return {"private_key": site.deploy_key_private, "known_hosts": site.git_host_key}


def git_host_key_pin_fields(site: Site, lines: list) -> dict:
    """The Site fields that pin LINES (the host keys ssh accepted on a successful clone) as SITE's
    git host key; {} when it is pinned already or none of LINES is a key of its host."""
    if site.git_host_key or not repository_is_ssh(site.repository_url):
        return {}
    kept = host_key_lines_for(site.repository_url, lines)
    if not kept:
        return {}
    fingerprint = key_fingerprint(kept[0].split(" ", 1)[1])
    return {"git_host_key": "\n".join(kept) + "\n", "git_host_key_fingerprint": fingerprint}


def git_host_key_reset_fields(site: Site, new_url: str) -> dict:
    """A repository on another host (or port) is another server: its key is pinned afresh."""
    if repository_endpoint(new_url) == repository_endpoint(site.repository_url):
        return {}
    return {"git_host_key": "", "git_host_key_fingerprint": ""}


def git_host_key_changed_error(site: Site, exc: AgentError) -> OperationError | None:
    """The agent's refusal of a changed git host key, with the one way to trust the new key; None
    for any other failure."""
    if exc.code != "host_key_changed":
        return None
    return OperationError(
        f"{exc} If the git host really changed its key (confirm it with them: GitHub and GitLab publish "
        f"theirs), clear the pin with DELETE /api/v1/sites/{site.pk}/git-host-key and deploy again: "
        "the next deploy pins the key the server shows then (its fingerprint is in that deploy's log)."
    )
