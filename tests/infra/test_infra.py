"""Checks of the deployment files under infra/ (no Docker, cluster or Azure needed).

The heavier tool checks (hadolint, kubernetes-validate, promtool, shellcheck, a wheel build in a fresh
venv) live in .ci/infra-check; these tests keep the files consistent with the code: metric names in the
alert rules and the dashboard exist in reactor.metrics, environment variables and the mounted reactor.toml
are accepted by reactor.config, Kubernetes objects reference each other correctly, and the Dockerfile's
HEALTHCHECK really tells a healthy /healthz from an unhealthy one.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import reactor.config as config
import reactor.metrics as metrics

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S = INFRA / "kubernetes" / "base"
SQLITE_OVERLAY = INFRA / "kubernetes" / "overlays" / "sqlite-single-node"
MONITORING = INFRA / "monitoring"
AZURE = INFRA / "azure"

# --------------------------------------------------------------------------- PromQL metric names

PROMQL_FUNCTIONS = frozenset(
    """
    abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp clamp_max
    clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month deg delta deriv
    double_exponential_smoothing exp floor histogram_avg histogram_count histogram_fraction histogram_quantile
    histogram_stddev histogram_stdvar histogram_sum holt_winters hour idelta increase info irate label_join
    label_replace last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute month pi
    predict_linear present_over_time quantile_over_time rad rate resets round scalar sgn sin sinh sort
    sort_by_label sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan tanh
    time timestamp vector year start end
    """.split()
)
PROMQL_AGGREGATORS = frozenset(
    "sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio".split()
)
PROMQL_KEYWORDS = frozenset("by without on ignoring group_left group_right bool and or unless offset atan2 inf nan".split())
# Series a rule may use that the reactor does not export itself (Prometheus' own scrape health).
FOREIGN_SERIES = frozenset({"up"})
# Labels that Prometheus adds to every series it scrapes.
TARGET_LABELS = frozenset({"job", "instance", "__name__"})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$\w+")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"\{([^}]*)\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_TOKEN = re.compile(r"(?P<num>\.?\d[\w.]*)|(?P<id>[A-Za-z_:][A-Za-z0-9_:]*)|(?P<other>\S)")


class PromQLError(ValueError):
    """An expression uses something that is neither a known function nor a metric name."""


def promql_parts(expr: str) -> tuple[set[str], set[str]]:
    """The metric names and the label names an expression uses.

    Strings, Grafana variables, label matchers, ranges and grouping clauses are cut out first, so that
    what is left is function names, keywords, numbers and metric names. An identifier followed by ``(``
    must be a PromQL function or aggregation; :class:`PromQLError` otherwise.
    """
    labels: set[str] = set()
    text = _GRAFANA_VAR.sub("0", expr)
    text = _STRING.sub('""', text)
    for m in _MATCHERS.finditer(text):
        labels.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(1)))
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    for m in _GROUPING.finditer(text):
        labels.update(name.strip() for name in m.group(2).split(",") if name.strip())
    text = _GROUPING.sub(r" \1 ", text)
    names: set[str] = set()
    tokens = list(_TOKEN.finditer(text))
    for i, tok in enumerate(tokens):
        ident = tok.group("id")
        if ident is None:
            continue
        followed_by_paren = i + 1 < len(tokens) and tokens[i + 1].group() == "("
        if ident.lower() in PROMQL_KEYWORDS:
            continue
        if ident in PROMQL_AGGREGATORS:
            continue
        if followed_by_paren:
            if ident not in PROMQL_FUNCTIONS:
                raise PromQLError(f"{ident}() is not a PromQL function (in {expr!r})")
            continue
        names.add(ident)
    return names, labels


def metric_names(expr: str) -> set[str]:
    return promql_parts(expr)[0]


def _exported_labels() -> dict[str, set[str]]:
    """Sample name -> the label names the reactor exports on it."""
    out: dict[str, set[str]] = {}
    for collector, names in metrics.REGISTRY._collector_to_names.items():
        base = set(getattr(collector, "_labelnames", ()))
        for name in names:
            out[name] = base | ({"le"} if name.endswith("_bucket") else set())
    return out


EXPORTED = set(metrics.METRIC_NAMES)
EXPORTED_LABELS = _exported_labels()


def promql_problems(expr: str) -> list[str]:
    """Everything wrong with an expression's metric and label names; empty when it is fine."""
    try:
        names, labels = promql_parts(expr)
    except PromQLError as exc:
        return [str(exc)]
    problems = []
    for name in sorted(names):
        if name.startswith("reactor_"):
            if name not in EXPORTED:
                problems.append(f"{name} is not exported by reactor.metrics (in {expr!r})")
        elif name not in FOREIGN_SERIES:
            problems.append(f"{name} is neither a reactor_ metric nor one of {sorted(FOREIGN_SERIES)} (in {expr!r})")
    known = set(TARGET_LABELS)
    for name in names:
        known |= EXPORTED_LABELS.get(name, set())
    for label in sorted(labels - known):
        problems.append(f"label {label!r} is on none of {sorted(names)} (in {expr!r})")
    return problems


def test_extraction_keeps_metrics_and_drops_functions_labels_and_durations() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(reactor_apply_lag_seconds_bucket{job=~"$job", '
        'instance=~"$instance"}[$__rate_interval]))) > 1.5e3 or vector(0) unless up{job="x"} offset 5m'
    )
    names, labels = promql_parts(expr)
    assert names == {"reactor_apply_lag_seconds_bucket", "up"}
    assert labels == {"le", "job", "instance"}
    assert promql_problems(expr) == []
    assert metric_names("sum without (route) (reactor_notifications_received_total) / on (job) group_left up") == {
        "reactor_notifications_received_total",
        "up",
    }


def test_a_made_up_metric_name_is_caught() -> None:
    assert promql_problems("rate(reactor_made_up_total[5m]) > 0")
    assert promql_problems("reactor_queue_depth_total > 0")  # a gauge has no _total sample
    assert promql_problems("node_load1 > 4")  # not ours, not an allowed foreign series
    assert promql_problems("rat(reactor_ready[5m])")  # not a function
    assert promql_problems('sum by (reason) (rate(reactor_scim_requests_total{outcome!="ok"}[5m]))')  # wrong label
    assert promql_problems('reactor_ready{job="askcody-entra-reactor"} == 0') == []


# --------------------------------------------------------------------------- every file parses


def _infra_files(*suffixes: str) -> list[Path]:
    return sorted(p for p in INFRA.rglob("*") if p.is_file() and p.suffix in suffixes)


@pytest.mark.parametrize("path", _infra_files(".yaml", ".yml"), ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} holds no document"


@pytest.mark.parametrize("path", _infra_files(".json"), ids=lambda p: str(p.relative_to(ROOT)))
def test_json_parses(path: Path) -> None:
    json.loads(path.read_text())


def test_there_are_files_to_check() -> None:
    assert len(_infra_files(".yaml", ".yml")) >= 10
    assert len(_infra_files(".json")) >= 2


# --------------------------------------------------------------------------- monitoring


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    return json.loads((MONITORING / "grafana-dashboard.json").read_text())


def _panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dash["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_alert_rules_use_only_exported_metrics() -> None:
    problems = [p for rule in _rules() for p in promql_problems(rule["expr"])]
    assert problems == []


def test_alert_rules_cover_what_the_operators_need() -> None:
    rules = {rule["alert"]: rule for rule in _rules()}
    used = {name for rule in rules.values() for name in metric_names(rule["expr"])}
    for name in (
        "reactor_subscription_earliest_expiry_seconds",
        "reactor_oldest_pending_age_seconds",
        "reactor_dead_letters",
        "reactor_ready",
        "reactor_scim_requests_total",
        "up",
    ):
        assert name in used, f"no alert uses {name}"
    assert any(rule["expr"].startswith("absent(") for rule in rules.values())
    readme = (INFRA / "README.md").read_text()
    anchors = {_github_anchor(h) for h in re.findall(r"^#+ (.+)$", readme, flags=re.M)}
    for name, rule in rules.items():
        assert rule.get("for"), f"{name} has no for:"
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        for key in ("summary", "description", "runbook"):
            assert rule["annotations"].get(key), f"{name} has no {key} annotation"
        anchor = re.match(r"infra/README\.md#([\w-]+)", rule["annotations"]["runbook"])
        assert anchor and anchor.group(1) in anchors, f"{name}: runbook anchor not a heading of infra/README.md"


def _github_anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_alert_unit_tests_feed_only_exported_series() -> None:
    doc = yaml.safe_load((MONITORING / "alerts.test.yaml").read_text())
    rules = {rule["alert"] for rule in _rules()}
    tested = set()
    for case in doc["tests"]:
        for series in case["input_series"]:
            assert promql_problems(series["series"]) == []
        tested |= {t["alertname"] for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert tested == rules, f"alerts never shown to fire in alerts.test.yaml: {sorted(rules - tested)}"


def test_dashboard_uses_only_exported_metrics() -> None:
    dash = _dashboard()
    exprs = [t["expr"] for p in _panels(dash) for t in p.get("targets", [])]
    assert len(exprs) >= 20
    problems = [p for e in exprs for p in promql_problems(e)]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["definition"])
            assert m, var["definition"]
            problems += promql_problems(m.group(1))
    assert problems == []


def test_dashboard_shows_what_the_brief_asks_for() -> None:
    used = {n for p in _panels(_dashboard()) for t in p.get("targets", []) for n in metric_names(t["expr"])}
    for name in (
        "reactor_notifications_received_total",
        "reactor_notifications_accepted_total",
        "reactor_notifications_rejected_total",
        "reactor_queue_depth",
        "reactor_oldest_pending_age_seconds",
        "reactor_apply_lag_seconds_bucket",
        "reactor_scim_requests_total",
        "reactor_graph_calls_total",
        "reactor_dead_letters",
        "reactor_subscription_earliest_expiry_seconds",
        "reactor_reconcile_duration_seconds_bucket",
        "reactor_reconcile_drift_total",
        "reactor_journal_write_seconds_bucket",
    ):
        assert name in used, f"no dashboard panel shows {name}"


def test_dashboard_is_well_formed() -> None:
    dash = _dashboard()
    ids = [p["id"] for p in _panels(dash)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    assert dash["uid"] and dash["schemaVersion"] >= 36
    names = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= names
    for panel in _panels(dash):
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["refId"] and target["expr"]


# --------------------------------------------------------------------------- Kubernetes


def _k8s() -> dict[str, dict[str, Any]]:
    """Every manifest of the base (infra/kubernetes/base) as "Kind/name" -> the object, and as "Kind" -> the object
    for the kinds that have only one (the two Services are "Service/reactor" and "Service/reactor-admin")."""
    docs = [
        doc | {"_file": path.name}
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    out: dict[str, dict[str, Any]] = {}
    for doc in docs:
        key = f"{doc['kind']}/{doc.get('metadata', {}).get('name', '')}"
        assert key not in out, f"two {key} objects"
        out[key] = doc
    kinds = [doc["kind"] for doc in docs]
    out |= {doc["kind"]: doc for doc in docs if kinds.count(doc["kind"]) == 1}
    return out


PUBLIC_PORT = 8080
ADMIN_PORT = 9090


def _container_ports(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def _resolve_port(port: int | str, container: dict[str, Any]) -> int:
    """A port as a probe or a Service targets it (a number or a container port's name) -> the number."""
    return port if isinstance(port, int) else _container_ports(container)[port]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


def test_kustomization_lists_every_manifest_but_the_templates() -> None:
    objs = _k8s()
    kust = objs["Kustomization"]
    assert "namespace" not in kust, "the base is namespace-agnostic"
    listed = set(kust["resources"])
    for name in listed:
        assert (K8S / name).is_file(), f"kustomization lists missing {name}"
    unlisted = {p.name for p in K8S.glob("*.yaml")} - listed - {"kustomization.yaml"}
    assert unlisted == {"secret.example.yaml", "servicemonitor.yaml"}
    for obj in objs.values():
        assert "namespace" not in obj.get("metadata", {}), f"{obj['_file']} pins a namespace"


def test_deployment_runs_two_hardened_replicas_rolled_one_at_a_time() -> None:
    objs = _k8s()
    dep = objs["Deployment"]["spec"]
    assert dep["replicas"] == 2
    assert dep["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    pod = dep["template"]["spec"]
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["labelSelector"]["matchLabels"].items() <= dep["template"]["metadata"]["labels"].items()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["terminationGracePeriodSeconds"] >= 30
    assert pod["enableServiceLinks"] is False
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    # /readyz is only on the admin listener; the probes all ask it (the kubelet reaches the pod IP).
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        assert c[probe]["httpGet"]["path"] == path, probe
        assert _resolve_port(c[probe]["httpGet"]["port"], c) == ADMIN_PORT, f"{probe} is not on the admin port"
    annotations = dep["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ADMIN_PORT), "/metrics is only on the admin listener"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and {"cpu", "memory"} <= set(c["resources"]["limits"])
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # PostgreSQL: no volume for the store, no claim in the base.
    assert "/var/lib/reactor" not in mounts
    assert not [v for v in volumes.values() if "persistentVolumeClaim" in v]
    assert "PersistentVolumeClaim" not in {o["kind"] for o in objs.values()}
    config_vol = volumes[mounts["/etc/reactor"]]["configMap"]["name"]
    assert config_vol == objs["ConfigMap"]["metadata"]["name"]
    env = _env(c)
    assert env["REACTOR_CONFIG"]["value"] == "/etc/reactor/reactor.toml"
    assert pod["serviceAccountName"] == objs["ServiceAccount"]["metadata"]["name"]


def test_deployment_secrets_come_from_the_secret_template() -> None:
    objs = _k8s()
    (c,) = objs["Deployment"]["spec"]["template"]["spec"]["containers"]
    secret = objs["Secret"]
    refs = {name: e["valueFrom"]["secretKeyRef"] for name, e in _env(c).items() if "secretKeyRef" in e.get("valueFrom", {})}
    assert set(refs) == {"REACTOR_ASKCODY_TOKEN", "REACTOR_GRAPH_CLIENT_SECRET", "REACTOR_SERVER_ADMIN_TOKEN",
                         "REACTOR_STORE_URL", "REACTOR_STORE_PASSWORD"}
    for ref in refs.values():
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
    assert refs["REACTOR_GRAPH_CLIENT_SECRET"].get("optional") is True
    assert refs["REACTOR_STORE_PASSWORD"].get("optional") is True, "absent with the password in the URL or Entra auth"
    assert not refs["REACTOR_STORE_URL"].get("optional"), "the replicas share one PostgreSQL store"
    assert not refs["REACTOR_ASKCODY_TOKEN"].get("optional")
    # The admin listener binds the pod IP: without its token the reactor would not start.
    assert not refs["REACTOR_SERVER_ADMIN_TOKEN"].get("optional")
    assert "REACTOR_SERVER_ADMIN_TOKEN" not in objs["ConfigMap"]["data"]["reactor.toml"]


def test_configmap_and_deployment_env_make_a_valid_configuration(tmp_path: Path) -> None:
    objs = _k8s()
    toml_text = objs["ConfigMap"]["data"]["reactor.toml"]
    data = tomllib.loads(toml_text)
    assert "token" not in data.get("askcody", {}) and "client_secret" not in data.get("graph", {}), "secret in ConfigMap"
    (c,) = objs["Deployment"]["spec"]["template"]["spec"]["containers"]
    secret = objs["Secret"]["stringData"]
    env = {
        name: e["value"] if "value" in e else secret.get(e["valueFrom"]["secretKeyRef"]["key"], f"placeholder-for-{name}")
        for name, e in _env(c).items()
    }
    path = tmp_path / "reactor.toml"
    path.write_text(toml_text)
    env["REACTOR_CONFIG"] = str(path)
    settings = config.load(env=env)
    assert settings.server.host == "0.0.0.0"
    assert settings.server.port == PUBLIC_PORT
    assert settings.server.admin_host == "0.0.0.0", "the kubelet and Prometheus reach the admin listener on the pod IP"
    assert settings.server.admin_port == ADMIN_PORT
    assert settings.server.admin_token.reveal() == secret["REACTOR_SERVER_ADMIN_TOKEN"]
    assert settings.server.public_url.startswith("https://")
    assert settings.store.url.startswith("postgresql://") and settings.store.password
    assert ":" not in settings.store.url.split("//", 1)[1].split("@", 1)[0], "the password is apart, not in the URL"
    assert settings.askcody.token and settings.graph.client_secret
    assert settings.groups


def test_a_pod_disruption_budget_keeps_one_replica_through_drains() -> None:
    objs = _k8s()
    pdb = objs["PodDisruptionBudget"]
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"] == {"minAvailable": 1, "selector": pdb["spec"]["selector"]}
    dep = objs["Deployment"]["spec"]
    assert pdb["spec"]["selector"]["matchLabels"] == dep["selector"]["matchLabels"]
    assert pdb["spec"]["minAvailable"] < dep["replicas"], "a drain can still move one replica"


def _overlay() -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The overlay's kustomization, and the objects of its files as "Kind" -> the object."""
    kust = yaml.safe_load((SQLITE_OVERLAY / "kustomization.yaml").read_text())
    objs = {}
    for path in sorted(SQLITE_OVERLAY.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            doc = yaml.safe_load(path.read_text())
            objs[doc["kind"]] = doc | {"_file": path.name}
    return kust, objs


def test_the_sqlite_overlay_runs_one_replica_recreated_on_a_volume_without_the_budget() -> None:
    kust, objs = _overlay()
    assert kust["resources"] == ["../../base", "persistentvolumeclaim.yaml"]
    assert "namespace" not in kust
    pvc = objs["PersistentVolumeClaim"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    patched = [p["path"] for p in kust["patches"] if "path" in p]
    assert patched == [objs["Deployment"]["_file"]]
    dep = objs["Deployment"]["spec"]
    assert dep["replicas"] == 1
    assert dep["strategy"] == {"type": "Recreate", "rollingUpdate": None}, "Recreate, and the base's rollingUpdate removed"
    (c,) = dep["template"]["spec"]["containers"]
    assert c["name"] == _k8s()["Deployment"]["spec"]["template"]["spec"]["containers"][0]["name"], "patches the base's container"
    env = _env(c)
    assert env["REACTOR_STORE_URL"] == {"name": "REACTOR_STORE_URL", "value": "sqlite:////var/lib/reactor/reactor.db",
                                        "valueFrom": None}
    assert config.sqlite_path(env["REACTOR_STORE_URL"]["value"]) == "/var/lib/reactor/reactor.db"
    assert env["REACTOR_STORE_PASSWORD"].get("$patch") == "delete"
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in dep["template"]["spec"]["volumes"]}
    assert volumes[mounts["/var/lib/reactor"]]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    deleted = [yaml.safe_load(p["patch"]) for p in kust["patches"] if "patch" in p]
    assert deleted == [{"$patch": "delete", "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                        "metadata": {"name": _k8s()["PodDisruptionBudget"]["metadata"]["name"]}}]


def test_service_ingress_networkpolicy_and_servicemonitor_reach_the_pod() -> None:
    objs = _k8s()
    pod_labels = objs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert objs["Deployment"]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (c,) = objs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert _container_ports(c) == {"http": PUBLIC_PORT, "admin": ADMIN_PORT}

    svc = objs["Service/reactor"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    svc_ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert set(svc_ports) == {"http"} and svc_ports["http"]["port"] == PUBLIC_PORT
    assert _resolve_port(svc_ports["http"]["targetPort"], c) == PUBLIC_PORT, "the public Service exposes only 8080"

    ing = objs["Ingress"]["spec"]
    assert ing["tls"] and ing["tls"][0]["hosts"]
    paths = set()
    for rule in ing["rules"]:
        assert rule["host"] in ing["tls"][0]["hosts"]
        for p in rule["http"]["paths"]:
            assert p["backend"]["service"]["name"] == svc["metadata"]["name"]
            assert p["backend"]["service"]["port"]["name"] in svc_ports
            paths.add(p["path"])
    assert paths == {"/notifications", "/lifecycle"}, "only the webhook paths are public"
    assert "defaultBackend" not in ing
    public_url = tomllib.loads(objs["ConfigMap"]["data"]["reactor.toml"])["server"]["public_url"]
    assert public_url == f"https://{ing['rules'][0]['host']}"

    admin = objs["Service/reactor-admin"]
    assert admin["spec"]["type"] == "ClusterIP", "the admin listener is never published outside the cluster"
    assert admin["spec"]["selector"].items() <= pod_labels.items()
    assert admin["spec"]["publishNotReadyAddresses"] is True, "scraped while /readyz fails"
    (admin_port,) = admin["spec"]["ports"]
    assert admin_port["port"] == ADMIN_PORT and _resolve_port(admin_port["targetPort"], c) == ADMIN_PORT

    sm = objs["ServiceMonitor"]
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    selector = sm["spec"]["selector"]["matchLabels"].items()
    assert selector <= admin["metadata"]["labels"].items()
    assert not selector <= svc["metadata"]["labels"].items(), "the ServiceMonitor must not select the public Service"
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == admin_port["name"] and endpoint["path"] == "/metrics"
    assert admin["metadata"]["labels"][sm["spec"]["jobLabel"]] == "askcody-entra-reactor"  # the job alerts expect


def test_networkpolicy_admits_the_webhooks_from_the_ingress_controller_and_the_admin_port_from_monitoring() -> None:
    objs = _k8s()
    pod_labels = objs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    netpol = objs["NetworkPolicy"]["spec"]
    assert netpol["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert netpol["policyTypes"] == ["Ingress"]
    sources: dict[int, list[dict[str, Any]]] = {}
    for rule in netpol["ingress"]:
        assert rule.get("from"), f"a rule admits {rule['ports']} from anywhere"
        for p in rule["ports"]:
            assert p["protocol"] == "TCP"
            sources.setdefault(p["port"], []).extend(rule["from"])
    assert set(sources) == {PUBLIC_PORT, ADMIN_PORT}, "nothing but the two listeners"
    namespaces = {
        port: {peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in peers}
        for port, peers in sources.items()
    }
    assert all(set(peer) == {"namespaceSelector"} for peers in sources.values() for peer in peers)
    assert namespaces == {PUBLIC_PORT: {"ingress-nginx"}, ADMIN_PORT: {"monitoring"}}


# --------------------------------------------------------------------------- Dockerfile


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    lines, buf = [], ""
    for raw in (INFRA / "Dockerfile").read_text().splitlines():
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        instr, _, rest = buf.partition(" ")
        lines.append((instr.upper(), rest.strip()))
        buf = ""
    return lines


def _final_stage() -> list[tuple[str, str]]:
    instrs = _dockerfile()
    last_from = max(i for i, (k, _) in enumerate(instrs) if k == "FROM")
    return instrs[last_from:]


def _env_instr(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for k, v in stage:
        if k == "ENV":
            for item in shlex.split(v):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_dockerfile_multi_stage_non_root_and_configured() -> None:
    instrs = _dockerfile()
    froms = [v for k, v in instrs if k == "FROM"]
    assert len(froms) >= 2 and all(v.startswith("python:3.11-slim") for v in froms)
    final = _final_stage()
    final_runs = " ".join(v for k, v in final if k == "RUN")
    assert "build-essential" not in final_runs and "gcc" not in final_runs, "no compiler in the runtime image"
    (user,) = [v for k, v in final if k == "USER"]
    assert user.split(":")[0].isdigit() and user.split(":")[0] != "0", "numeric non-root user"
    env = _env_instr(final)
    assert env["REACTOR_SERVER_HOST"] == "0.0.0.0"
    assert env["REACTOR_STORE_URL"] == "sqlite:////var/lib/reactor/reactor.db"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    settings = config.from_mapping({}, {k: v for k, v in env.items() if k.startswith("REACTOR_")})
    config.validate(settings, require_remote=False)
    # `docker run` without a token works: the admin listener (status page, /metrics) stays on loopback.
    assert settings.server.admin_host == "127.0.0.1" and not settings.server.admin_token.reveal()
    assert settings.server.port == PUBLIC_PORT and settings.server.admin_port == ADMIN_PORT
    exposed = {int(port.split("/")[0]) for k, v in final if k == "EXPOSE" for port in v.split()}
    assert exposed == {PUBLIC_PORT, ADMIN_PORT}
    assert ("ENTRYPOINT", '["reactor"]') in final and ("CMD", '["serve"]') in final
    assert any(k == "VOLUME" and "/var/lib/reactor" in v for k, v in final)
    assert any(k == "HEALTHCHECK" for k, _ in final)


def test_dockerignore_lets_every_copy_source_through() -> None:
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "the .dockerignore is an allow-list"
    allowed = {p[1:].rstrip("/").rstrip("*") for p in patterns if p.startswith("!")}
    for k, v in _dockerfile():
        if k == "COPY" and "--from=" not in v:
            *sources, _dest = v.split()
            for src in sources:
                assert src.rstrip("*") in allowed, f"COPY {src} is excluded by .dockerignore"
                if not src.endswith("*"):
                    assert (ROOT / src).exists(), f"COPY {src}: no such file in the repository"


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.server.status if self.path == "/healthz" else 404  # type: ignore[attr-defined]
        body = b'{"status": "ok"}'
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_dockerfile_healthcheck_tells_healthy_from_unhealthy(status: int, healthy: bool) -> None:
    (hc,) = [v for k, v in _final_stage() if k == "HEALTHCHECK"]
    argv = json.loads(hc[hc.index("CMD") + 3 :].strip())
    assert argv[0] == "python", "the slim image has no curl"
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    server.status = status  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = dict(os.environ, REACTOR_SERVER_PORT=str(server.server_address[1]))
        proc = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert (proc.returncode == 0) is healthy, proc.stderr.decode()


# --------------------------------------------------------------------------- Azure


def _bicep() -> str:
    return (AZURE / "main.bicep").read_text()


def _bicep_block(text: str, key: str) -> str:
    """The text between the braces or brackets that open right after ``key:`` (its first occurrence)."""
    m = re.search(rf"\b{key}: ([{{\[])", text)
    assert m, f"no {key}: block"
    close = {"{": "}", "[": "]"}[m.group(1)]
    depth = 0
    for i in range(m.start(1), len(text)):
        depth += {m.group(1): 1, close: -1}.get(text[i], 0)
        if depth == 0:
            return text[m.start(1) + 1 : i]
    raise AssertionError(f"unclosed {key}: block")


def _bicep_env() -> dict[str, str]:
    """Container env var name -> what it is set to: "value: ..." or "secretRef: ..."."""
    return dict(re.findall(r"name: '(REACTOR_[A-Z_]+)'\s+((?:value|secretRef): [^\n]+)", _bicep()))


def test_bicep_env_vars_are_configuration_keys() -> None:
    text = _bicep()
    names = set(re.findall(r"name: '(REACTOR_[A-Z_]+)'", text))
    assert {"REACTOR_ASKCODY_TOKEN", "REACTOR_GRAPH_CLIENT_ID", "REACTOR_STORE_URL", "REACTOR_SERVER_HOST"} <= names
    assert {"REACTOR_SERVER_ADMIN_HOST", "REACTOR_SERVER_ADMIN_PORT", "REACTOR_SERVER_ADMIN_TOKEN"} <= names
    env = {name: "x" for name in names if name != "REACTOR_CONFIG"}
    overrides = config._env_overrides(env)  # raises ConfigurationError on an unknown key
    assert sum(len(v) for v in overrides.values()) == len(env)


def _bicep_var(name: str) -> str:
    m = re.search(rf"^var {name} = '([^'\n]*)'$", _bicep(), flags=re.M)
    assert m, f"no var {name}"
    return m.group(1)


def test_bicep_store_is_postgresql_with_entra_authentication_and_no_password() -> None:
    text = _bicep()
    env = _bicep_env()
    assert env["REACTOR_STORE_URL"] == "value: storeUrl"
    assert env["REACTOR_STORE_ENTRA_AUTH"] == "value: 'true'"
    assert env["REACTOR_STORE_LEASE_SECONDS"] == "value: string(storeLeaseSeconds)"
    assert "REACTOR_STORE_PASSWORD" not in env
    url = _bicep_var("storeUrl")
    assert url.startswith("postgresql://${identity.name}@${postgres.properties.fullyQualifiedDomainName}:5432/")
    assert url.endswith("?sslmode=require"), "Azure Database for PostgreSQL asks for TLS"
    # What the replicas get, with Bicep's interpolations filled in, is a configuration the reactor accepts.
    rendered = (url.replace("${identity.name}", "askcody-reactor-id")
                .replace("${postgres.properties.fullyQualifiedDomainName}", "askcody-reactor-pg-x.postgres.database.azure.com")
                .replace("${databaseName}", _bicep_var("databaseName")))
    settings = config.from_mapping({}, {"REACTOR_STORE_URL": rendered, "REACTOR_STORE_ENTRA_AUTH": "true",
                                        "REACTOR_STORE_LEASE_SECONDS": "15"})
    config.validate(settings, require_remote=False)
    assert settings.store.entra_auth and not settings.store.password
    # The SQLite-on-SMB path is gone: no storage account, share, environment storage or mount.
    for gone in ("Microsoft.Storage/", "managedEnvironments/storages", "AzureFile", "azureFile", "nobrl", "sqlite:",
                 "/var/lib/reactor"):
        assert gone not in text, gone
    assert "administratorLoginPassword" not in text and "administratorLogin" not in text


def test_bicep_postgresql_is_private_and_the_managed_identity_is_its_entra_administrator() -> None:
    text = re.sub(r"(^|\s)//[^\n]*", r"\1", _bicep())
    server = _bicep_block(text[text.index("resource postgres 'Microsoft.DBforPostgreSQL/flexibleServers@"):], "properties")
    network = _bicep_block(server, "network")
    assert "publicNetworkAccess: 'Disabled'" in network
    assert "delegatedSubnetResourceId: '${vnet.id}/subnets/postgres'" in network
    assert "privateDnsZoneArmResourceId: postgresDns.id" in network
    auth = _bicep_block(server, "authConfig")
    assert "activeDirectoryAuth: 'Enabled'" in auth and "passwordAuth: 'Disabled'" in auth
    admin = text[text.index("resource postgresAdmin "):]
    admin = admin[: admin.index("\n}\n")]
    assert "name: identity.properties.principalId" in admin and "principalName: identity.name" in admin
    assert "principalType: 'ServicePrincipal'" in admin
    app = text[text.index("resource app 'Microsoft.App/containerApps@"):]
    assert "'${identity.id}': {}" in _bicep_block(app, "identity"), "the app runs as that identity"
    assert "postgresAdmin" in _bicep_block(app, "dependsOn"), "the role exists before a replica connects"
    env = _bicep_env()
    assert env.get("REACTOR_GRAPH_CLIENT_ID") and "AZURE_CLIENT_ID" in text, "DefaultAzureCredential picks that identity"
    # The environment sits in the same network, in a subnet of its own.
    vnet_config = _bicep_block(text, "vnetConfiguration")
    assert "infrastructureSubnetId: '${vnet.id}/subnets/apps'" in vnet_config
    delegations = re.findall(r"serviceName: '([\w./]+)'", _bicep_block(text, "subnets"))
    assert delegations == ["Microsoft.App/environments", "Microsoft.DBforPostgreSQL/flexibleServers"]


def test_bicep_is_balanced_and_has_what_the_brief_asks_for() -> None:
    text = _bicep()
    code = re.sub(r"//[^\n]*", "", re.sub(r"'(?:[^'\\]|\\.)*'", "''", text))
    for open_, close in ("{}", "[]", "()"):
        assert code.count(open_) == code.count(close), f"unbalanced {open_}{close}"
    for rtype in (
        "Microsoft.OperationalInsights/workspaces@",
        "Microsoft.App/managedEnvironments@",
        "Microsoft.App/containerApps@",
        "Microsoft.ManagedIdentity/userAssignedIdentities@",
        "Microsoft.Authorization/roleAssignments@",
        "Microsoft.Network/virtualNetworks@",
        "Microsoft.Network/privateDnsZones@",
        "Microsoft.Network/privateDnsZones/virtualNetworkLinks@",
        "Microsoft.DBforPostgreSQL/flexibleServers@",
        "Microsoft.DBforPostgreSQL/flexibleServers/databases@",
        "Microsoft.DBforPostgreSQL/flexibleServers/administrators@",
    ):
        assert f"'{rtype}" in text, rtype
    scale = _bicep_block(text, "scale")
    assert re.search(r"^\s*minReplicas: 2$", scale, flags=re.M), "two replicas at least"
    assert re.search(r"^param maxReplicas int = \d+$", text, flags=re.M)
    assert re.search(r"@minValue\(2\)\n(@\w+\(\d+\)\n)*param maxReplicas ", text)
    assert "keyVaultUrl:" in text
    for probe, path in (("Startup", "/healthz"), ("Liveness", "/healthz"), ("Readiness", "/readyz")):
        assert re.search(rf"type: '{probe}'\s+httpGet: {{\s+path: '{path}'\s+port: adminPort\s", text), probe


def test_bicep_exposes_only_the_public_listener_outside_the_environment() -> None:
    text = re.sub(r"(^|\s)//[^\n]*", r"\1", _bicep())  # comments, not the // of 'https://...'
    assert re.search(r"^var adminPort = 9090$", text, flags=re.M)
    ingress = _bicep_block(text, "ingress")
    mappings = _bicep_block(ingress, "additionalPortMappings")
    main = ingress.replace(mappings, "")
    assert re.search(r"\bexternal: true\b", main) and re.search(r"\btargetPort: 8080\b", main)
    assert re.findall(r"\bexternal: (\w+)", mappings) == ["false"], "the admin port is internal to the environment"
    assert re.findall(r"\btargetPort: (\w+)", mappings) == ["adminPort"]
    assert text.count("external: true") == 1, "nothing else is external"
    assert re.search(r"allowInsecure: false", main)


def test_bicep_admin_listener_binds_all_interfaces_with_a_token_from_a_secret() -> None:
    text = _bicep()
    env = _bicep_env()
    assert env["REACTOR_SERVER_ADMIN_HOST"] == "value: '0.0.0.0'"
    assert env["REACTOR_SERVER_ADMIN_PORT"] == "value: string(adminPort)"
    assert env["REACTOR_SERVER_PORT"] == "value: '8080'"
    m = re.fullmatch(r"secretRef: '([\w-]+)'", env["REACTOR_SERVER_ADMIN_TOKEN"])
    assert m, "the admin token comes from a Container Apps secret"
    vault_ref = r"'\$\{keyVault\.properties\.vaultUri\}secrets/\$\{(\w+)\}'"
    secret = re.search(rf"name: '{m.group(1)}'\s+keyVaultUrl: {vault_ref}", text)
    assert secret, "the admin token secret is a Key Vault reference"
    assert re.search(rf"^param {secret.group(1)} string = '[\w-]+'$", text, flags=re.M)
    assert "admin_token" not in text, "no token in the generated reactor.toml"


def test_bicep_parameters_file_matches_the_template() -> None:
    declared = dict(re.findall(r"^param (\w+) \w+( =)?", _bicep(), flags=re.M))
    given = json.loads((AZURE / "main.parameters.json").read_text())["parameters"]
    assert set(given) <= set(declared), f"undeclared parameters: {sorted(set(given) - set(declared))}"
    required = {name for name, default in declared.items() if not default}
    assert required <= set(given), f"required parameters missing: {sorted(required - set(given))}"
    for group in given["groups"]["value"]:
        assert set(group) == {"id", "askcodyGroup", "grants"}
        assert group["grants"] in config.GRANTS


# --------------------------------------------------------------------------- setup-graph-app.sh


def _run_setup(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[list[str]], dict[str, Any]]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    az = bindir / "az"
    az.write_text(f"#!{sys.executable}\n" + (Path(__file__).parent / "fake_az.py").read_text())
    az.chmod(0o755)
    log = tmp_path / "az.log"
    log.write_text("")
    env = dict(
        os.environ,
        PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}",
        FAKE_AZ_STATE=str(tmp_path / "state.json"),
        FAKE_AZ_LOG=str(log),
        RETRY_SLEEP="0",
    )
    proc = subprocess.run(["bash", str(AZURE / "setup-graph-app.sh"), *args], env=env, capture_output=True, text=True, timeout=60)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    state_file = tmp_path / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    return proc, calls, state


GRAPH_ROLE_IDS = {
    "df021288-bdef-4463-88db-98f22de89214",
    "5b567255-7703-4780-807c-7be8301ae99b",
    "98830695-27a2-44f7-8c18-0c3ebc9698f6",
}


def _posts(calls: list[list[str]]) -> int:
    return sum(1 for c in calls if c[0] == "rest" and "POST" in c)


def test_setup_graph_app_creates_then_reuses_an_app_registration(tmp_path: Path) -> None:
    proc, calls, state = _run_setup(tmp_path, "--app-name", "reactor-test", "--create-secret", "--key-vault", "kv1")
    assert proc.returncode == 0, proc.stderr
    assert any(c[:3] == ["ad", "app", "create"] for c in calls)
    assert any(c[:3] == ["ad", "sp", "create"] for c in calls)
    ((sp, roles),) = state["assignments"].items()
    assert sp in state["sps"], "the roles went to the app's own service principal"
    assert set(roles) == GRAPH_ROLE_IDS and _posts(calls) == 3
    ((app_id, perms),) = state["perms"].items()
    assert set(perms) == GRAPH_ROLE_IDS
    assert state["vault"] == {"kv1/graph-client-secret": "s3cr3t-value"}
    assert "s3cr3t-value" not in proc.stdout + proc.stderr, "a secret stored in Key Vault is never printed"
    assert app_id in proc.stderr

    proc, calls, state = _run_setup(tmp_path, "--app-name", "reactor-test")
    assert proc.returncode == 0, proc.stderr
    assert "reused" in proc.stderr
    assert not any(c[:3] in (["ad", "app", "create"], ["ad", "sp", "create"]) for c in calls)
    assert not any(c[:4] == ["ad", "app", "permission", "add"] for c in calls)
    assert _posts(calls) == 0 and len(state["apps"]) == 1


def test_setup_graph_app_grants_to_a_managed_identity(tmp_path: Path) -> None:
    principal = "77777777-7777-7777-7777-777777777777"
    proc, calls, state = _run_setup(tmp_path, "--managed-identity", principal)
    assert proc.returncode == 0, proc.stderr
    assert set(state["assignments"][principal]) == GRAPH_ROLE_IDS
    assert not state["apps"]
    assert not any(c[:2] == ["ad", "app"] for c in calls)


def test_setup_graph_app_refuses_bad_usage(tmp_path: Path) -> None:
    proc, _, _ = _run_setup(tmp_path)
    assert proc.returncode == 2
    proc, calls, _ = _run_setup(tmp_path, "--managed-identity", "x", "--create-secret")
    assert proc.returncode == 1 and not calls
