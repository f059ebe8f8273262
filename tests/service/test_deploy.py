"""deploy/: dashboards and alerts reference real ragprod metrics; manifests are wired right."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from examples.fastapi_service._observe import HttpMetrics
from examples.fastapi_service._stack import layer_available
from examples.fastapi_service.app import _Auth
from examples.fastapi_service.settings import ServiceSettings
from llama_index.core import VectorStoreIndex

import ragprod
from ragprod.demo import load_corpus
from ragprod.metrics import RagMetrics
from ragprod.testing import ExtractiveLLM, FaultyQueryEngine, HashEmbedding
from tests._services import delete_prefix, free_port
from tests.service.conftest import ROOT, ServiceProcess

DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "ragprod-alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "ragprod-dashboard.json"
K8S = DEPLOY / "kubernetes"

#: Which layer exports the metrics with each name prefix.
PREFIX_LAYER = {
    "ragprod_query_": "tracing",
    "ragprod_llm_": "tracing",
    "ragprod_retrieval_": "tracing",
    "ragprod_cache_": "cache",
    "ragprod_resilience_": "resilience",
    "ragprod_pii_": "pii",
    "ragprod_guard_": "guard",
    "ragprod_service_": "service",
}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}
METRIC = re.compile(r"\bragprod_[a-z0-9_]+")
SELECTOR = re.compile(r"\b(ragprod_[a-z0-9_]+)\{([^}]*)\}")
BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def _layer_of(name: str) -> str:
    for prefix, layer in PREFIX_LAYER.items():
        if name.startswith(prefix):
            return layer
    return "unknown"


def _installed(layer: str) -> bool:
    return layer in {"guard", "service"} or layer_available(layer)


def _layers(metrics: RagMetrics, redis_url: str, prefix: str) -> dict[str, Any]:
    layers: dict[str, Any] = {"guard": True, "tracing": False}
    if layer_available("tracing"):
        from opentelemetry.sdk.trace import TracerProvider

        from ragprod.tracing import Tracing

        layers["tracing"] = Tracing(tracer_provider=TracerProvider())
    if layer_available("cache"):
        from ragprod.cache import TieredCache

        layers["cache"] = TieredCache.from_url(redis_url, prefix=prefix, metrics=metrics)
    if layer_available("pii"):
        from ragprod.pii import PIIAnonymizer

        layers["pii"] = PIIAnonymizer(key=b"deploy-test-key-0123456789abcdef")
    if layer_available("resilience"):
        from ragprod.resilience import CircuitBreaker, RateLimiter, Resilience

        breaker = CircuitBreaker("deploy", minimum_calls=2, window_size=2)
        layers["resilience"] = Resilience(
            breaker=breaker, retry=False, rate_limiter=RateLimiter(1000), name="deploy"
        )
    return layers


@pytest.fixture(scope="module")
def exported(redis_server_url: str) -> Iterator[dict[str, tuple[str, frozenset[str]]]]:
    """Metric families of a fully hardened engine and the service: name -> (type, labels)."""

    metrics = RagMetrics()
    prefix = f"ragprod-test:deploy-{uuid.uuid4().hex[:8]}"
    layers = _layers(metrics, redis_server_url, prefix)
    index = VectorStoreIndex.from_documents(load_corpus(), embed_model=HashEmbedding(dim=256))
    engine = ragprod.harden(index, metrics=metrics, name="deploy", llm=ExtractiveLLM(), **layers)
    stream = ragprod.harden(
        index, metrics=metrics, name="deploy", llm=ExtractiveLLM(), streaming=True, **layers
    )
    failing = ragprod.harden(
        FaultyQueryEngine(fail_always=ConnectionError("down")), metrics=metrics, name="deploy-f",
        **layers,
    )  # fmt: skip
    bridged = layer_available("tracing")
    if bridged:
        from ragprod.tracing import instrument

        instrument(metrics=metrics)
    try:
        engine.query("How long do refunds take?")
        engine.query("How long do refunds take?")
        list(stream.query("How do I fail over Redis?").response_gen)
        # rejected, failing, then circuit-open queries: every error series gets a sample
        for query in ["", *["What happens when the LLM provider is down?"] * 4]:
            with contextlib.suppress(Exception):
                failing.query(query)
    finally:
        if bridged:
            from ragprod.tracing import uninstrument

            uninstrument()
    HttpMetrics(None, metrics)
    _Auth(ServiceSettings(tenants={"acme": "k-acme-0123456789"}), metrics)
    families: dict[str, tuple[str, frozenset[str]]] = {}
    collectors = getattr(metrics, "_collectors", {})
    for family in metrics.registry.collect():
        labels = {key for sample in family.samples for key in sample.labels}
        collector = collectors.get(family.name)
        labels |= set(getattr(collector, "_labelnames", ()))
        families[family.name] = (family.type, frozenset(labels - {"le"}))
    yield families
    delete_prefix(redis_server_url, prefix)


def _expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    out = [
        (f"alert:{rule['alert']}", rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append((f"panel:{panel['title']}:{target['refId']}", target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if isinstance(variable.get("query"), dict):
            out.append((f"variable:{variable['name']}", variable["query"]["query"]))
    return out


def _family(name: str, families: dict[str, tuple[str, frozenset[str]]]) -> str | None:
    for family, (kind, _) in families.items():
        for suffix in SUFFIXES.get(kind, ("",)):
            if name == family + suffix:
                return family
    return None


def problems(expr: str, exported: dict[str, tuple[str, frozenset[str]]]) -> list[str]:
    """What is wrong with ``expr``: unknown metrics, unknown selector or aggregation labels."""
    names = set(METRIC.findall(expr))
    if not names:
        return ["references no ragprod metric"]
    unknown = sorted(n for n in names if _family(n, exported) is None)
    if unknown:
        return [f"metrics nobody exports: {unknown}"]
    out: list[str] = []
    labels: set[str] = {"le"}
    for name in names:
        labels |= exported[_family(name, exported) or ""][1]
    for metric, selector in SELECTOR.findall(expr):
        own = exported[_family(metric, exported) or ""][1] | {"le"}
        used = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", selector))
        if not used <= own:
            out.append(f"{metric} has no label(s) {sorted(used - own)}")
    for group in BY.findall(expr):
        used = {label.strip() for label in group.split(",") if label.strip()}
        if not used <= labels:
            out.append(f"aggregation by unknown label(s) {sorted(used - labels)}")
    return out


@pytest.mark.parametrize(("where", "expr"), _expressions(), ids=[w for w, _ in _expressions()])
def test_expression_uses_exported_metrics_and_labels(
    where: str, expr: str, exported: dict[str, tuple[str, frozenset[str]]]
) -> None:
    """Each alert/panel expression names metrics (and labels) ragprod really exports."""
    names = set(METRIC.findall(expr))
    missing_layers = sorted({_layer_of(n) for n in names if not _installed(_layer_of(n))})
    if missing_layers:
        pytest.skip(f"{where}: layer(s) {', '.join(missing_layers)} not installed in this ragprod")
    assert problems(expr, exported) == [], where


@pytest.mark.parametrize(
    "expr",
    [
        "rate(ragprod_query_requestz_total[5m])",
        'rate(ragprod_query_requests_total{tenant="a"}[5m])',
        "sum by (tenant) (rate(ragprod_query_requests_total[5m]))",
        "ragprod_query_requests",
        "up",
    ],
)
def test_checker_rejects_unknown_names_and_labels(
    expr: str, exported: dict[str, tuple[str, frozenset[str]]]
) -> None:
    """The checker itself flags a misspelt metric, an unknown label and a bare family name."""
    if not layer_available("tracing"):
        pytest.skip("tracing layer not installed")
    assert problems(expr, exported)


def test_alert_rules_cover_the_issue_list() -> None:
    """Alerts exist for error rate, p95 latency, open breaker, hit ratio, Redis, token spend."""
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    required = (
        "RagprodHighErrorRate",
        "RagprodHighLatencyP95",
        "RagprodCircuitOpen",
        "RagprodLowCacheHitRatio",
        "RagprodRedisErrors",
        "RagprodTokenSpendHigh",
    )
    for name in required:
        assert name in alerts
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"page", "ticket"}, name
        assert rule["annotations"]["summary"], name


def test_promtool_accepts_rules_and_unit_tests() -> None:
    """promtool check rules and promtool test rules pass (skipped without promtool)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    checked = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True,
                             text=True, timeout=60, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", "ragprod-alerts.test.yml"],
                            cwd=ALERTS.parent, capture_output=True, text=True, timeout=60,
                            check=False)  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_dashboard_is_valid_grafana_json() -> None:
    """The dashboard has a uid, unique panel ids, and a datasource variable every target uses."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "ragprod-overview"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24


def _manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d)
    return docs


def test_kubernetes_probes_use_health_and_ready() -> None:
    """Liveness/startup probe /health, readiness /ready, on the container's named port."""
    deployment = next(d for d in _manifests() if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    selector = deployment["spec"]["selector"]["matchLabels"]
    service = next(d for d in _manifests() if d["kind"] == "Service")
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"][0]["targetPort"] in ports


def test_every_configured_variable_is_a_service_setting() -> None:
    """Each RAGPROD_* variable in the manifests names a ServiceSettings field (no typos)."""
    fields = {f"RAGPROD_{name.upper()}" for name in ServiceSettings.model_fields}
    names: set[str] = set()
    for doc in [*_manifests(), *yaml.safe_load_all((K8S / "secret.example.yaml").read_text())]:
        if doc and doc["kind"] in {"ConfigMap", "Secret"}:
            names |= set(doc.get("data") or {}) | set(doc.get("stringData") or {})
        if doc and doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                names |= {env["name"] for env in container.get("env", [])}
    ragprod_names = {n for n in names if n.startswith("RAGPROD_")}
    assert ragprod_names
    assert ragprod_names <= fields, sorted(ragprod_names - fields)


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    """The image drops root, checks /health, and copies paths that exist."""
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r"^HEALTHCHECK .*\n?.*/health", text, flags=re.MULTILINE)
    for source in re.findall(r"^COPY (?!--from)(?:--\S+ )*(\S+(?: \S+)*) \S+$", text, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), path
    assert 'CMD ["python", "-m", "examples.fastapi_service"]' in text


def test_dashboard_json_is_generated_from_generate_py() -> None:
    """deploy/grafana/ragprod-dashboard.json is what generate.py writes (no hand edits drift)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate", DASHBOARD.with_name("generate.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert json.loads(DASHBOARD.read_text(encoding="utf-8")) == module.build()


def _grafana_to_promql(expr: str) -> str:
    """Substitute the dashboard's Grafana variables with values Prometheus accepts."""
    return expr.replace("$__rate_interval", "1m").replace("$engine", ".*")


def test_every_query_runs_on_a_real_prometheus_scraping_the_service(
    service: ServiceProcess, tmp_path: Path
) -> None:
    """A real Prometheus scrapes the service, loads the rules, and evaluates every expression."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (Debian: apt-get install prometheus)")
    import httpx

    with service.client() as client:  # some traffic, so the series exist
        for query in ("How long do refunds take?", "How long do refunds take?", ""):
            client.post("/query", json={"query": query})
    port = free_port()
    config = tmp_path / "prometheus.yml"
    shutil.copy(ALERTS, tmp_path / ALERTS.name)
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [ALERTS.name],
                "scrape_configs": [
                    {"job_name": "ragprod", "static_configs": [{"targets": [service.url[7:]]}]}
                ],
            }
        )
    )
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                up = httpx.get(f"{api}/query", params={"query": "up"}, timeout=2).json()
                if up["data"]["result"] and up["data"]["result"][0]["value"][1] == "1":
                    break
            except (httpx.TransportError, KeyError, ValueError):
                pass
            time.sleep(0.2)
        else:
            pytest.fail("prometheus did not scrape the service within 30 s")
        rules = httpx.get(f"{api}/rules", timeout=5).json()["data"]["groups"]
        unhealthy = [
            (rule["name"], rule.get("lastError"))
            for group in rules
            for rule in group["rules"]
            if rule.get("health") not in ("ok", "unknown")
        ]
        assert not unhealthy
        failed = {}
        for where, expr in _expressions():
            if where.startswith("variable:"):
                continue  # label_values() is Grafana's, not PromQL
            answer = httpx.get(
                f"{api}/query", params={"query": _grafana_to_promql(expr)}, timeout=5
            ).json()
            if answer.get("status") != "success":
                failed[where] = answer.get("error")
        assert not failed
        present = httpx.get(
            f"{api}/query", params={"query": 'ragprod_service_requests_total{route="/query"}'},
            timeout=5,
        ).json()  # fmt: skip
        assert present["data"]["result"], "the service's series were not scraped"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
