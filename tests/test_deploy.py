"""The deployment files under deploy/, checked offline as an operator would find them wrong: every
Kubernetes manifest against the Kubernetes schemas (strict: no unknown field), the Compose file
against the compose-spec schema, HAProxy's configuration with ``haproxy -c``; and what ties them to
the service: each VAULT_* variable exists and the production profile accepts the values, the probes
answer, the commands exist, the web replicas and the worker read one source of settings, the
secrets are references only, memory fits argon2id's cost."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import check_jsonschema
import jsonschema
import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from vault.crypto.providers import load_key_provider
from vault.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "compose.yaml"
HAPROXY_CFG = DEPLOY / "haproxy.cfg"
VAULT = [sys.executable, "-m", "vault.cli"]
# The oldest Kubernetes still commonly run, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
# Settings that hold a credential: only ever a reference (a Secret, a compose secret), never a value.
SECRET_SETTINGS = {f"VAULT_{name.upper()}" for name, field in Settings.model_fields.items()
                   if field.annotation in (SecretStr, SecretStr | None)} | {"VAULT_DATABASE_URL"}
SETTING_NAMES = {f"VAULT_{name.upper()}" for name in Settings.model_fields}
MIB = 1024 * 1024


class _StrictLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (PyYAML would keep the last one silently)."""


def _no_duplicate_keys(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    keys = [key.value for key, _ in node.value if isinstance(key, yaml.ScalarNode) and key.value != "<<"]
    duplicates = {key for key in keys if keys.count(key) > 1}
    if duplicates:
        raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {sorted(duplicates)}", node.start_mark)
    loader.flatten_mapping(node)
    return dict(loader.construct_pairs(node, deep=deep))


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicate_keys)


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.load_all(path.read_text(), Loader=_StrictLoader) if doc]


def manifests() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc)
            for path in sorted(KUBERNETES.glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in load_all(path)]


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in manifests() if doc["kind"] == kind}


def pod_containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def vault_containers() -> dict[str, dict[str, Any]]:
    """Every container of the project's workloads (web, worker, jobs), by workload/container."""
    return {f"{doc['kind']}/{name}/{container['name']}": container
            for kind in ("Deployment", "Job") for name, doc in by_kind(kind).items()
            for container in pod_containers(doc)}


def compose() -> dict[str, Any]:
    document = yaml.load(COMPOSE.read_text(), Loader=_StrictLoader)  # noqa: S506  (a SafeLoader)
    assert isinstance(document, dict)
    return document


def compose_vault_services() -> dict[str, dict[str, Any]]:
    """The Compose services that run the image's `vault` (the replicas, the worker, db upgrade)."""
    return {name: service for name, service in compose()["services"].items()
            if service.get("image") == "citizen-vault:local" and service.get("command", [None])[:1] == ["vault"]}


def interpolated(value: str) -> str:
    """A Compose value with ${VAR:?…} / ${VAR:-default} filled as an operator's .env would."""
    examples = {"VAULT_ISSUER": "https://vault.example.fr", "VAULT_MAIL_FROM": "Mairie <no-reply@example.fr>"}
    return re.sub(r"\$\{(\w+)(?::[?-]([^}]*))?\}", lambda m: examples.get(m[1], m[2] or ""), value)


def production_settings(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]) -> Settings:
    """The settings a process started with exactly this environment would get, checked as at startup."""
    for name in list(os.environ):
        if name.startswith("VAULT_"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    settings.check()  # raises ConfigError, naming the variable, if the production profile refuses them
    return settings


# ---- Kubernetes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_kubernetes_manifest_is_valid_and_has_no_unknown_field(version: str) -> None:
    found = manifests()
    assert {doc["kind"] for _, doc in found} >= {"Deployment", "Service", "Job", "PodDisruptionBudget",
                                                 "NetworkPolicy", "ConfigMap", "ServiceAccount"}
    for name, doc in found:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} (Kubernetes {version}): {exc.message} at {list(exc.path)}")


def test_a_misspelt_field_is_caught_by_the_validation() -> None:
    """The validation above is strict: an unknown field (a typo an operator would miss) fails it."""
    deployment = by_kind("Deployment")["citizen-vault"]
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = broken["spec"]["template"]["spec"][
        "containers"][0].pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_kustomization_applies_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    files = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


def test_kubernetes_secrets_are_references_and_every_setting_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "Secret" not in {doc["kind"] for _, doc in manifests()}, "no Secret with data in the repository"
    config = by_kind("ConfigMap")["citizen-vault"]["data"]
    assert set(config) <= SETTING_NAMES, set(config) - SETTING_NAMES
    assert not set(config) & SECRET_SETTINGS, "a credential in the ConfigMap"
    secret_refs: dict[str, str] = {}
    for where, container in vault_containers().items():
        for variable in container.get("env", []):
            assert variable["name"] in SETTING_NAMES, (where, variable["name"])
            assert "value" not in variable, (where, variable["name"], "inlined")
            secret_refs[variable["name"]] = variable["valueFrom"]["secretKeyRef"]["key"]
    assert set(secret_refs) >= {"VAULT_DATABASE_URL", "VAULT_SMTP_URL", "VAULT_S3_SECRET_ACCESS_KEY"}
    # The production profile accepts these settings (with a value in place of each secret reference).
    examples = {"VAULT_DATABASE_URL": "postgresql+psycopg://vault:pw@postgres:5432/vault",
                "VAULT_SMTP_URL": "smtp+starttls://vault:pw@smtp.example.fr:587"}
    settings = production_settings(monkeypatch, {**config, **{name: examples.get(name, "x") for name in secret_refs}})
    assert settings.is_production and settings.key_provider == "aws-kms" and settings.kms_key_id
    assert settings.jobs == "worker" and settings.storage_backend == "s3" and settings.antivirus == "clamd"


def test_web_replicas_worker_and_jobs_read_the_same_settings() -> None:
    containers = vault_containers()
    assert {where.rsplit("/", 1)[0] for where in containers} == {
        "Deployment/citizen-vault", "Deployment/citizen-vault-worker", "Job/citizen-vault-db-upgrade"}
    sources = {where: (container["envFrom"], container["env"]) for where, container in containers.items()}
    assert len({json.dumps(source, sort_keys=True) for source in sources.values()}) == 1, sources
    images = {container["image"] for container in containers.values()}
    assert len(images) == 1, images


def test_kubernetes_commands_exist_in_the_vault_cli() -> None:
    commands = {tuple(container["command"]) for container in vault_containers().values()}
    assert {("vault", "worker"), ("vault", "db", "upgrade"), ("vault", "storage", "init")} <= commands
    for command in commands:
        check_command(list(command))


def test_probes_are_readyz_for_readiness_and_healthz_for_liveness() -> None:
    web = by_kind("Deployment")["citizen-vault"]
    (container,) = web["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # /readyz answers within about 2 s even when S3 stalls: the probe waits longer than that.
    assert container["readinessProbe"]["timeoutSeconds"] > 2
    assert web["spec"]["replicas"] >= 2
    pdb = by_kind("PodDisruptionBudget")["citizen-vault"]
    assert pdb["spec"]["selector"]["matchLabels"] == web["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["minAvailable"] < web["spec"]["replicas"]


def test_the_probed_paths_answer(browser) -> None:
    paths = {probe["httpGet"]["path"] for container in vault_containers().values()
             for probe in (container.get("readinessProbe"), container.get("livenessProbe"), container.get("startupProbe"))
             if probe}
    paths |= set(re.findall(r"\buri (\S+)", HAPROXY_CFG.read_text()))
    assert paths == {"/readyz", "/healthz"}
    for path in paths:
        assert browser.get(path).status_code == 200, path


def test_the_ingress_reaches_the_web_port_and_only_the_ingress_controller_is_a_trusted_proxy() -> None:
    web = by_kind("Deployment")["citizen-vault"]
    (container,) = web["spec"]["template"]["spec"]["containers"]
    service = by_kind("Service")["citizen-vault"]["spec"]
    assert service["selector"] == web["spec"]["selector"]["matchLabels"]
    assert service.get("sessionAffinity", "None") == "None"
    (port,) = service["ports"]
    assert port["targetPort"] in [p["name"] for p in container["ports"]]
    backends = [path["backend"]["service"] for rule in by_kind("Ingress")["citizen-vault"]["spec"]["rules"]
                for path in rule["http"]["paths"]]
    assert backends == [{"name": "citizen-vault", "port": {"name": port["name"]}}]
    # uvicorn believes X-Forwarded-Proto from the same proxies the app believes X-Forwarded-For from:
    # Kubernetes expands $(VAULT_TRUSTED_PROXIES) from the ConfigMap (a variable it defines).
    command = container["command"]
    assert "--proxy-headers" in command
    assert command[command.index("--forwarded-allow-ips") + 1] == "$(VAULT_TRUSTED_PROXIES)"
    assert by_kind("ConfigMap")["citizen-vault"]["data"]["VAULT_TRUSTED_PROXIES"]


def test_web_memory_fits_argon2id_for_every_worker_process() -> None:
    config = by_kind("ConfigMap")["citizen-vault"]["data"]
    defaults = Settings()
    concurrency = int(config.get("VAULT_ARGON2_CONCURRENCY", defaults.argon2_concurrency))
    memory_kib = int(config.get("VAULT_ARGON2_MEMORY_KIB", defaults.argon2_memory_kib))
    (container,) = by_kind("Deployment")["citizen-vault"]["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    workers = int(command[command.index("--workers") + 1])
    argon2 = workers * concurrency * memory_kib * 1024
    limit = quantity(container["resources"]["limits"]["memory"])
    request = quantity(container["resources"]["requests"]["memory"])
    # About 200 MiB per process for Python and the app besides argon2id's buffers.
    assert request >= argon2 + workers * 200 * MIB, (request, argon2)
    assert limit >= request


def test_pods_run_non_root_with_a_read_only_root_filesystem() -> None:
    for kind in ("Deployment", "Job"):
        for name, doc in by_kind(kind).items():
            pod = doc["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True, name
            assert pod["automountServiceAccountToken"] is False, name
            mounts = {volume["name"]: volume for volume in pod.get("volumes", [])}
            for container in pod_containers(doc):
                security = container["securityContext"]
                assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
                assert security["capabilities"]["drop"] == ["ALL"]
                # Uploads spool (ciphertext) to the temporary folder: it must be writable.
                tmp = [mount for mount in container["volumeMounts"] if mount["mountPath"] == "/tmp"]
                assert tmp and "emptyDir" in mounts[tmp[0]["name"]], (name, container["name"])


def test_network_policy_lets_in_only_the_ingress_controller_on_the_web_port() -> None:
    policies = by_kind("NetworkPolicy")
    ingress = policies["citizen-vault-ingress"]["spec"]
    web, scrape = ingress["ingress"]
    (peer,) = web["from"]
    assert "ingress" in json.dumps(peer["namespaceSelector"]) and "ipBlock" not in peer
    (container,) = by_kind("Deployment")["citizen-vault"]["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert [port["port"] for port in web["ports"]] == [ports["http"]]
    # The metrics port: Prometheus in the monitoring namespace only, and nothing else on that rule.
    (peer,) = scrape["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert "ipBlock" not in peer and "podSelector" in peer
    assert [port["port"] for port in scrape["ports"]] == [ports["metrics"]]
    egress = policies["citizen-vault-egress"]["spec"]
    ports = {port["port"] for rule in egress["egress"] for port in rule["ports"]}
    assert ports == {53, 5432, 8333, 3310, 587, 443}
    config = by_kind("ConfigMap")["citizen-vault"]["data"]
    assert config["VAULT_CLAMD_ADDRESS"].endswith(":3310") and config["VAULT_S3_ENDPOINT_URL"].endswith(":8333")
    # Every vault pod is under both policies.
    for kind in ("Deployment", "Job"):
        for doc in by_kind(kind).values():
            labels = doc["spec"]["template"]["metadata"]["labels"]
            for policy in policies.values():
                assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()


def quantity(value: str) -> int:
    units = {"Ki": 1024, "Mi": MIB, "Gi": 1024 * MIB}
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", value)
    assert match, value
    return int(match[1]) * units.get(match[2] or "", 1)


# ---- Compose and HAProxy -------------------------------------------------------------------------


def test_compose_file_matches_the_compose_spec() -> None:
    schema_path = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema = json.loads(schema_path.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    document = yaml.safe_load(COMPOSE.read_text())
    errors = [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(document)]
    assert not errors
    broken = {**document, "services": {**document["services"], "worker": {**document["services"]["worker"],
                                                                            "dependson": []}}}
    assert list(validator.iter_errors(broken)), "the schema refuses an unknown key"


def test_compose_replicas_worker_and_db_upgrade_share_settings_and_secrets(monkeypatch, tmp_path: Path) -> None:
    services = compose_vault_services()
    assert set(services) == {"vault-1", "vault-2", "worker", "db-upgrade"}
    environments = {name: service["environment"] for name, service in services.items()}
    assert len({json.dumps(env, sort_keys=True) for env in environments.values()}) == 1, environments
    secrets = {name: service["secrets"] for name, service in services.items()}
    assert len({json.dumps(secret, sort_keys=True) for secret in secrets.values()}) == 1, secrets
    environment = next(iter(environments.values()))
    assert set(environment) <= SETTING_NAMES, set(environment) - SETTING_NAMES
    assert not set(environment) & SECRET_SETTINGS, "a credential inlined in compose.yaml"
    targets = {secret["target"] for secret in next(iter(secrets.values()))}
    assert targets <= SETTING_NAMES and targets >= {"VAULT_DATABASE_URL", "VAULT_SMTP_URL"}
    # Each compose secret comes from a file outside the repository's tracked content.
    for name, secret in compose()["secrets"].items():
        assert set(secret) == {"file"} and secret["file"].startswith("./secrets/"), name
        ignored = subprocess.run(["git", "check-ignore", "-q", str(DEPLOY / secret["file"])], cwd=ROOT, check=False)
        assert ignored.returncode == 0, f"{secret['file']} could be committed"
    # Replicas wait for a successful `vault db upgrade`.
    for name in ("vault-1", "vault-2", "worker"):
        assert services[name]["depends_on"]["db-upgrade"] == {"condition": "service_completed_successfully"}
    # The production profile accepts them: the keyring named, in the shared folder, mode 0600.
    values = {name: interpolated(str(value)) for name, value in environment.items()}
    keyring = tmp_path / "keyring.json"
    keyring.write_text("{}")
    keyring.chmod(0o600)
    keyring_folder = Path(values["VAULT_KEYRING_FILE"]).parent
    values["VAULT_KEYRING_FILE"] = str(keyring)
    examples = {"VAULT_DATABASE_URL": "postgresql+psycopg://vault:pw@postgres:5432/vault",
                "VAULT_SMTP_URL": "smtp+starttls://vault:pw@smtp.example.fr:587"}
    settings = production_settings(monkeypatch, {**values, **{name: examples.get(name, "x") for name in targets}})
    assert settings.is_production and settings.jobs == "worker" and settings.key_provider == "local"
    # The keyring's folder (not the file) is the volume every replica and the worker mount.
    for name, service in services.items():
        mounts = [volume.split(":") for volume in service["volumes"]]
        assert [mount[1] for mount in mounts if mount[0] == "keyring"] == [str(keyring_folder)], name
    assert compose()["services"]["worker"]["volumes"] == ["keyring:/var/lib/vault"], "the worker writes the keyring"


def test_compose_commands_exist_in_the_vault_cli() -> None:
    commands = [service["command"] for service in compose_vault_services().values()]
    assert ["vault", "worker"] in commands and ["vault", "db", "upgrade"] in commands
    for command in commands:
        check_command(command)


def test_haproxy_checks_readyz_forwards_the_client_and_is_the_only_trusted_proxy() -> None:
    cfg = HAPROXY_CFG.read_text()
    assert re.search(r"^\s*option httpchk\b", cfg, re.M) and "uri /readyz" in cfg
    assert re.search(r"^\s*http-check expect status 200\b", cfg, re.M)
    assert re.search(r"^\s*option forwardfor\b", cfg, re.M)
    assert not re.search(r"^\s*(cookie|stick|stick-table|balance source)\b", cfg, re.M), "no stickiness"
    servers = re.findall(r"^\s*server \S+ (\S+):8000 check\b", cfg, re.M)
    replicas = [name for name in compose_vault_services() if name.startswith("vault-")]
    assert sorted(servers) == sorted(replicas)
    document = compose()
    address = document["services"]["haproxy"]["networks"]["vault"]["ipv4_address"]
    environment = compose_vault_services()["vault-1"]["environment"]
    assert environment["VAULT_TRUSTED_PROXIES"] == address
    for name in replicas:
        command = document["services"][name]["command"]
        assert "--proxy-headers" in command and command[command.index("--forwarded-allow-ips") + 1] == address


def test_clamd_accepts_its_configuration_and_the_largest_document(tmp_path: Path) -> None:
    """``clamconf`` (Debian's clamav-daemon, which scripts/test.sh installs) parses deploy/clamd.conf
    as clamd would: an unknown or misspelt option is an error there."""
    clamconf = shutil.which("clamconf")
    if clamconf is None:
        pytest.skip("clamconf is not installed (scripts/test.sh installs Debian's clamav-daemon)")
    shutil.copy(DEPLOY / "clamd.conf", tmp_path / "clamd.conf")
    parsed = subprocess.run([clamconf, "-c", str(tmp_path)], capture_output=True, text=True, check=False)
    assert "ERROR" not in parsed.stdout + parsed.stderr, parsed.stdout + parsed.stderr
    stream_max = re.search(r'^StreamMaxLength = "(\d+)"', parsed.stdout, re.M)
    assert stream_max, parsed.stdout
    conf = dict(re.findall(r"^(\w+)\s+(\S+)", (DEPLOY / "clamd.conf").read_text(), re.M))
    assert conf["AlertExceedsMax"] == "yes" and conf["TemporaryDirectory"] == "/tmp"
    assert "/tmp" in compose()["services"]["clamd"]["tmpfs"], "clamd's spool on a tmpfs"
    for max_file_mb in (compose_vault_services()["vault-1"]["environment"]["VAULT_MAX_FILE_MB"],
                        by_kind("ConfigMap")["citizen-vault"]["data"]["VAULT_MAX_FILE_MB"]):
        assert int(stream_max[1]) > int(max_file_mb) * MIB


def test_haproxy_accepts_its_configuration(tmp_path: Path) -> None:
    """``haproxy -c`` (scripts/test.sh installs Debian's haproxy), with a throwaway certificate in
    place of the deployment's secret."""
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        pytest.skip("haproxy is not installed (scripts/test.sh installs Debian's haproxy)")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "vault.example.fr")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
    pem = tmp_path / "tls.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    cfg = HAPROXY_CFG.read_text()
    assert "crt /run/secrets/tls.pem" in cfg
    (tmp_path / "haproxy.cfg").write_text(cfg.replace("/run/secrets/tls.pem", str(pem)))
    result = subprocess.run([haproxy, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "[ALERT]" not in result.stderr
    broken = cfg.replace("/run/secrets/tls.pem", str(pem)).replace("http-check expect status 200",
                                                                    "http-check expect stauts 200")
    (tmp_path / "broken.cfg").write_text(broken)
    assert subprocess.run([haproxy, "-c", "-f", str(tmp_path / "broken.cfg")], capture_output=True,
                          check=False).returncode != 0


# ---- the commands --------------------------------------------------------------------------------


def check_command(command: list[str]) -> None:
    """`vault <subcommand> --help` succeeds and lists every option the manifest passes."""
    assert command[0] == "vault", command
    words = [word for word in command[1:] if not word.startswith("-")]
    options = [word for word in command[1:] if word.startswith("--")]
    subcommand = []
    for word in words:  # the words before the first option are the subcommand
        if command.index(word) > len(subcommand) + 1:
            break
        subcommand.append(word)
    result = subprocess.run([*VAULT, *subcommand, "--help"], capture_output=True, text=True, check=False,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, (command, result.stderr)
    assert "Usage:" in result.stdout and " ".join(subcommand) in result.stdout
    for option in options:
        assert option in result.stdout, (command, option)


# ---- what the Compose services run ---------------------------------------------------------------


def test_compose_entrypoint_exports_each_secret_file_into_its_variable(tmp_path: Path) -> None:
    """The vault services' entrypoint (run by /bin/sh as Docker would, with Compose's `$$` as `$`)
    turns /run/secrets/VAULT_* files into variables, then runs the command."""
    entrypoint = compose_vault_services()["vault-1"]["entrypoint"]
    assert entrypoint[:2] == ["/bin/sh", "-c"]
    script = entrypoint[2].replace("$$", "$")
    assert "/run/secrets/" in script
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "VAULT_DATABASE_URL").write_text("postgresql+psycopg://vault:p a$s@postgres/vault\n")
    (secrets / "VAULT_SMTP_URL").write_text("smtp://relay:25")
    (secrets / "unrelated").write_text("not exported")
    shown = subprocess.run(["/bin/sh", "-c", script.replace("/run/secrets/", f"{secrets}/"), *entrypoint[3:],
                            sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
                           capture_output=True, text=True, check=True)
    environment = json.loads(shown.stdout)
    assert environment["VAULT_DATABASE_URL"] == "postgresql+psycopg://vault:p a$s@postgres/vault"
    assert environment["VAULT_SMTP_URL"] == "smtp://relay:25"
    assert "not exported" not in environment.values()


def test_compose_keyring_init_creates_a_keyring_the_replicas_accept_and_never_overwrites_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service = compose()["services"]["keyring-init"]
    program = service["entrypoint"]
    environment = compose_vault_services()["vault-1"]["environment"]
    keyring_file = environment["VAULT_KEYRING_FILE"]
    assert program[:2] == ["python", "-c"] and keyring_file in program[2]
    assert service["volumes"] == [f"keyring:{Path(keyring_file).parent}"]
    folder = tmp_path / "keyring"
    command = [sys.executable, "-c", program[2].replace(keyring_file, str(folder / "keyring.json"))]
    created = subprocess.run(command, capture_output=True, text=True, check=False)
    assert created.returncode == 0, created.stderr
    assert (folder / "keyring.json").stat().st_mode & 0o777 == 0o600
    before = (folder / "keyring.json").read_bytes()
    again = subprocess.run(command, capture_output=True, text=True, check=False)
    assert again.returncode != 0 and (folder / "keyring.json").read_bytes() == before
    values = {name: interpolated(str(value)) for name, value in environment.items()}
    values |= {"VAULT_KEYRING_FILE": str(folder / "keyring.json"),
               "VAULT_DATABASE_URL": "postgresql+psycopg://vault:pw@postgres:5432/vault"}
    keys = load_key_provider(production_settings(monkeypatch, values))
    assert keys.unwrap(keys.wrap(b"x", context=b"deploy"), context=b"deploy") == b"x"


# ---- metrics ---------------------------------------------------------------------------------------

DASHBOARD = DEPLOY / "grafana" / "citizen-vault.json"
_SAMPLE_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                    "gauge": ("",), "summary": ("_sum", "_count", "_created"), "info": ("_info",),
                    "unknown": ("",)}


def exported_metric_names() -> set[str]:
    """Every sample name the service's metrics endpoint can show: read from the registry the
    processes fill (every domain imported, as in a running process) and the job queue's collector."""
    from prometheus_client import REGISTRY, CollectorRegistry

    import vault.services  # noqa: F401  (every domain, hence every instrument, registered)
    from vault import metrics

    registry = CollectorRegistry()
    registry.register(metrics.JobQueueCollector(lambda: {("default", "todo"): 1}, lambda: {"send_mail": 0}))
    names = set()
    for family in [*REGISTRY.collect(), *registry.collect()]:
        names |= {family.name + suffix for suffix in _SAMPLE_SUFFIXES[family.type]}
        names |= {sample.name for sample in family.samples}
    return names


def dashboard_metric_names(dashboard: dict[str, Any]) -> dict[str, set[str]]:
    """The metric names each panel's queries (and the template variables) read."""
    found: dict[str, set[str]] = {}
    queries = [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]
    queries += [(f"${variable['name']}", variable["definition"]) for variable in dashboard["templating"]["list"]
                if variable["type"] == "query"]
    for where, expr in queries:
        found.setdefault(where, set()).update(re.findall(r"\bvault_[a-z0-9_]+", expr))
    return found


def test_the_dashboard_reads_only_metrics_the_service_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_metric_names()
    read = dashboard_metric_names(dashboard)
    for where, names in read.items():
        assert names, f"{where}: no metric of the service"
        assert names <= exported, f"{where} reads {sorted(names - exported)}, which the service does not export"
    # Each part of the service has its panel.
    everything = set().union(*read.values())
    for name in ("vault_http_requests_total", "vault_http_request_duration_seconds_bucket", "vault_logins_total",
                 "vault_oidc_tokens_issued_total", "vault_documents_uploaded_total",
                 "vault_documents_uploaded_bytes_total", "vault_documents_downloaded_total",
                 "vault_documents_downloaded_bytes_total", "vault_antivirus_verdicts_total",
                 "vault_antivirus_scan_duration_seconds_bucket", "vault_object_store_errors_total",
                 "vault_job_queue_jobs", "vault_job_queue_failed_jobs"):
        assert name in everything, f"no panel reads {name}"
    # A misspelt name would be caught.
    broken = json.loads(json.dumps(dashboard))
    broken["panels"][0]["targets"][0]["expr"] = "sum(rate(vault_http_request_total[5m]))"
    assert not dashboard_metric_names(broken)[broken["panels"][0]["title"]] <= exported


def test_the_dashboard_is_a_grafana_dashboard_on_a_prometheus_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(target["datasource"]["uid"] == "${datasource}" for target in panel["targets"])
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert [target["refId"] for target in panel["targets"]] == [chr(65 + i) for i in range(len(panel["targets"]))]


def test_the_metrics_port_is_reachable_only_inside_the_deployment() -> None:
    """Compose: every vault process serves metrics on the network only (exposed, never published);
    Kubernetes: a named containerPort in each long-running pod, announced to Prometheus."""
    config = by_kind("ConfigMap")["citizen-vault"]["data"]
    port = int(config["VAULT_METRICS_PORT"])
    for name in ("citizen-vault", "citizen-vault-worker"):
        template = by_kind("Deployment")[name]["spec"]["template"]
        (container,) = template["spec"]["containers"]
        assert {"name": "metrics", "containerPort": port} in container["ports"], name
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and int(annotations["prometheus.io/port"]) == port
    service_ports = [p["port"] for p in by_kind("Service")["citizen-vault"]["spec"]["ports"]]
    assert port not in service_ports, "the metrics port is not on the public Service"
    environment = compose_vault_services()["vault-1"]["environment"]
    port = int(environment["VAULT_METRICS_PORT"])
    for name, service in compose()["services"].items():
        assert not any(str(port) in str(published) for published in service.get("ports", [])), name
        if name in ("vault-1", "vault-2", "worker"):
            assert service["expose"] == [str(port)], name

