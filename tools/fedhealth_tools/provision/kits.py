"""``fedhealth provision``: run FLARE provisioning and say what was made for whom.

Copies the project file (setting the server's host name when asked), runs ``nvflare provision``
into a git-ignored folder and reads the kits back: for each participant its kit path, the SHA-256
fingerprint of its certificate (to confirm out of band that the kit a hospital received is the one
made for it), its site policy (privacy scopes, default scope, BYOC, who has shell commands, GPUs,
whether it streams its job logs to the server, the limits every train request must meet) and the
files it must keep secret.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from fedhealth.constants import SITE_CONFIG_DEFAULT_FILE, SITE_LIMITS_KEY, SITE_SCOPE_LIMITS_KEY
from fedhealth.onboarding.preflight import nvflare_bin
from fedhealth_tools.provision.errors import ProvisionError

ROOT_STATE = "state/cert.json"  # the root CA's private key: stays with the project admin, offline


@dataclass
class Kit:
    """One participant's startup kit."""

    name: str
    kind: str  # "server", "site" or "admin"
    path: Path
    org: str = ""
    role: str = ""
    fingerprint: str = ""
    secrets: list[str] = field(default_factory=list)
    policy: dict = field(default_factory=dict)


def set_server_host(project_file: Path, dest: Path, host: str | None) -> Path:
    """A copy of ``project_file`` whose server participant is named ``host`` (its host name)."""
    project = yaml.safe_load(Path(project_file).read_text())
    if host:
        servers = [p for p in project.get("participants", []) if p.get("type") == "server"]
        if len(servers) != 1:
            raise ProvisionError(f"{project_file}: needs exactly one server to set its host name")
        servers[0]["name"] = host
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump(project, sort_keys=False))
    return dest


def run_provision(project_file: Path, workspace: Path, *, server_host: str | None = None) -> Path:
    """Provision ``project_file`` into ``workspace``; returns the new ``prod_NN`` folder.

    Raises:
        ProvisionError: FLARE's provisioning failed; the message carries its last lines.
    """
    workspace = Path(workspace).resolve()
    copy = set_server_host(project_file, workspace / "project.yml", server_host)
    name = yaml.safe_load(copy.read_text())["name"]
    before = set((workspace / name).glob("prod_*"))
    cmd = [nvflare_bin(), "provision", "-p", str(copy), "-w", str(workspace), "--force"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    made = sorted(set((workspace / name).glob("prod_*")) - before)
    if proc.returncode != 0 or not made:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-8:]
        raise ProvisionError("nvflare provision failed:\n  " + "\n  ".join(tail))
    return made[-1]


def fingerprint(cert_path: Path) -> str:
    """SHA-256 fingerprint of a PEM certificate as ``AB:CD:...`` (as ``openssl x509 -fingerprint`` prints)."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _subject(cert_path: Path, oid: x509.ObjectIdentifier) -> str:
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    values = cert.subject.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def _site_policy(local: Path) -> dict:
    policy: dict = {}
    privacy = local / "privacy.json"
    if privacy.is_file():
        data = json.loads(privacy.read_text())
        policy["scopes"] = {
            s["name"]: [f["path"].rsplit(".", 1)[-1] for f in s.get("task_result_filters", [])]
            for s in data.get("scopes", [])
        }
        policy["default_scope"] = data.get("default_scope")
    authz = local / "authorization.json.default"
    if authz.is_file():
        perms = json.loads(authz.read_text()).get("permissions", {})
        policy["byoc_roles"] = sorted(
            r for r, p in perms.items() if p == "any" or p.get("byoc") not in (None, "none")
        )
        policy["shell_roles"] = sorted(
            r for r, p in perms.items() if p == "any" or p.get("shell_commands") not in (None, "none")
        )
    resources = local / "resources.json.default"
    if resources.is_file():
        data = json.loads(resources.read_text())
        policy["stream_logs"] = bool(data.get("allow_log_streaming", True))  # FLARE's default: on
        for comp in data.get("components", []):
            if comp.get("id") == "resource_manager":  # FLARE's GPU manager or the CPU-fallback one
                policy["gpus"] = comp["args"].get("num_of_gpus", 0)
                policy["mem_per_gpu_in_GiB"] = comp["args"].get("mem_per_gpu_in_GiB", 0)
    limits = local / SITE_CONFIG_DEFAULT_FILE
    if limits.is_file():
        policy["limits"] = json.loads(limits.read_text())
    return policy


LIMIT_LABELS = {
    "min_batch_size": "batch >= {}",
    "min_examples_per_round": "patients/update >= {}",
    "max_learning_rate": "lr <= {:g}",
    "allow_submit_model": "submit_model {}",
    "require_dp": "DP-SGD required {}",
}


def _limits_text(values: dict) -> str:
    parts = []
    for key, label in LIMIT_LABELS.items():
        if key in values:
            value = values[key]
            parts.append(label.format(("yes" if value else "no") if isinstance(value, bool) else value))
    return ", ".join(parts)


def limits_line(settings: dict) -> str:
    """A site's provisioned limits in one line, e.g. ``batch >= 16, ...; strict: submit_model no``."""
    text = _limits_text(settings.get(SITE_LIMITS_KEY) or {})
    for scope, values in (settings.get(SITE_SCOPE_LIMITS_KEY) or {}).items():
        text += f"; {scope}: {_limits_text(values)}"
    if settings.get("dp_max_epsilon") is not None:
        text += f"; dp_max_epsilon {settings['dp_max_epsilon']:g}"
    return text


def read_kits(prod_dir: Path) -> list[Kit]:
    """Every kit in a provisioned ``prod_NN`` folder, server first, then sites, then admins."""
    kits = []
    for folder in sorted(p for p in Path(prod_dir).iterdir() if (p / "startup").is_dir()):
        startup = folder / "startup"
        if (startup / "fed_server.json").is_file():
            kind, cert, key = "server", startup / "server.crt", "startup/server.key"
        elif (startup / "fed_client.json").is_file():
            kind, cert, key = "site", startup / "client.crt", "startup/client.key"
        else:
            kind, cert, key = "admin", startup / "client.crt", "startup/client.key"
        kit = Kit(name=folder.name, kind=kind, path=folder)
        if cert.is_file():
            kit.fingerprint = fingerprint(cert)
            kit.org = _subject(cert, NameOID.ORGANIZATION_NAME)
            kit.role = _subject(cert, NameOID.UNSTRUCTURED_NAME)
        kit.secrets = [key]
        if (startup / "client_context.tenseal").is_file():
            kit.secrets.append("startup/client_context.tenseal (HE secret key)")
        if kind == "site":
            kit.policy = _site_policy(folder / "local")
        kits.append(kit)
    order = {"server": 0, "site": 1, "admin": 2}
    return sorted(kits, key=lambda k: (order[k.kind], k.name))


def _policy_line(policy: dict) -> str:
    scopes = ", ".join(
        f"{name} [{' + '.join(filters) or 'no filters'}]"
        for name, filters in policy.get("scopes", {}).items()
    )
    gpus = policy.get("gpus", 0)
    hw = f"{gpus} GPU x {policy.get('mem_per_gpu_in_GiB', 0)} GiB" if gpus else "CPU only"
    byoc = ", ".join(policy.get("byoc_roles", [])) or "nobody"
    shell = ", ".join(policy.get("shell_roles", [])) or "nobody"
    logs = "streamed to the server" if policy.get("stream_logs", True) else "kept at the site"
    return (
        f"default scope {policy.get('default_scope') or '-'}; scopes: {scopes or 'none'}; "
        f"BYOC: {byoc}; {hw}; shell commands: {shell}; job logs: {logs}"
    )


def report(prod_dir: Path, kits: list[Kit]) -> str:
    """A readable account of what was made for whom and what each must keep secret."""
    lines = [f"startup kits in {prod_dir}", ""]
    for kit in kits:
        who = f"{kit.kind} {kit.name}" + (
            f" ({kit.org}" + (f", {kit.role})" if kit.role else ")") if kit.org else ""
        )
        lines += [who, f"  kit:         {kit.path}", f"  certificate: SHA-256 {kit.fingerprint}"]
        if kit.policy:
            lines.append(f"  policy:      {_policy_line(kit.policy)}")
        if kit.policy.get("limits"):
            lines.append(f"  limits:      {limits_line(kit.policy['limits'])}")
        lines.append(f"  keep secret: {', '.join(kit.secrets)}")
    state = Path(prod_dir).parent / ROOT_STATE
    lines += [
        "",
        f"project admin: keep {state} offline and secret: it holds the root CA's private key, which",
        "signs every certificate (needed again only to add a participant or rotate a certificate).",
        "Send each kit to its owner over a trusted channel and confirm the fingerprint above by phone.",
        "Check a kit before deployment: fedhealth preflight <kit folder>",
    ]
    return "\n".join(lines)
