"""The chart lints, renders objects the API server accepts and hands the guard a valid config."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from guard.config import load_config, parse_config

from .conftest import (
    CHART,
    CUSTOM_CONFIG,
    FULLNAME,
    NAMESPACE,
    VARIANTS,
    Rendered,
    render,
    rule_grants,
)

# The chart's kubeVersion floor and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ["1.27.0", kubernetes_validate.latest_version()]
CONFIG_PATH = "/etc/deploy-guard/guard.yaml"


def _container(rendered: Rendered) -> dict[str, Any]:
    containers = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _pod_spec(rendered: Rendered) -> dict[str, Any]:
    spec: dict[str, Any] = rendered.one("Deployment")["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_lint_is_clean(variant: str) -> None:
    report = helm.lint(CHART, VARIANTS[variant], strict=True, namespace=NAMESPACE)

    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_object_passes_the_official_schema(variant: str) -> None:
    rendered = render(VARIANTS[variant])
    failures = []
    for obj in rendered.objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a Prometheus Operator CRD: no official schema; its shape is tested below
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                failures.append(f"{obj['kind']}/{obj['metadata']['name']} on {version}: {exc}")
    assert failures == []
    assert {"Deployment", "Service", "ConfigMap"} <= {o["kind"] for o in rendered.objects}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_configmap_is_a_config_the_guard_accepts(variant: str) -> None:
    rendered = render(VARIANTS[variant])

    config = parse_config(rendered.guard_config)  # raises ConfigError naming every bad key

    assert config.server.host == "0.0.0.0"
    assert config.kubernetes.kubeconfig is None  # in-cluster service account
    assert _container(rendered)["ports"][0]["containerPort"] == config.server.port


def test_secret_env_overrides_the_config_as_guard_serve_reads_it(tmp_path: Path) -> None:
    rendered = render(VARIANTS["secret-env"])
    path = tmp_path / "guard.yaml"
    path.write_text(rendered.one("ConfigMap")["data"]["guard.yaml"], encoding="utf-8")

    config = load_config(path, rendered.one("Secret")["stringData"])

    assert config.prometheus.url == "https://guard:s3cret@prom:9090"


def test_token_hashes_reach_the_guard_through_the_secret(tmp_path: Path) -> None:
    from guard.tokens import TokenBook, token_digest

    tokens = f"[{{name: ci, sha256: {token_digest('dg_ci')}, scopes: [deploy]}}]"
    rendered = render({"secret": {"env": {"GUARD_AUTH__TOKENS": tokens}}})
    path = tmp_path / "guard.yaml"
    path.write_text(rendered.one("ConfigMap")["data"]["guard.yaml"], encoding="utf-8")

    config = load_config(path, rendered.one("Secret")["stringData"])

    principal = TokenBook.from_config(config.auth).authenticate("dg_ci")
    assert principal is not None and principal.name == "ci"
    assert "dg_ci" not in str(rendered.one("Secret"))


def test_custom_config_reaches_the_guard_unchanged() -> None:
    config = parse_config(render({"config": CUSTOM_CONFIG}).guard_config)

    assert config.prometheus.url == "http://prometheus.monitoring:9090"
    assert config.analysis.interval_seconds == 15
    assert config.analysis.tiers.critical.error_rate == 0.1
    assert config.analysis.tiers.critical.latency_seconds == 3.0  # the guard's default kept
    assert config.analysis.queries.requests.startswith("sum by ({group_by}) (increase(http_server_")
    checkout = config.analysis_for("checkout")
    assert checkout.tiers.high.error_rate == 0.03
    assert checkout.healthy_intervals_to_promote == 5
    assert config.store.data_dir == Path("/var/lib/deploy-guard")  # chart defaults kept


def test_deployment_runs_the_guard_locked_down() -> None:
    rendered = render()
    deployment = rendered.one("Deployment")
    pod, container = _pod_spec(rendered), _container(rendered)
    security = container["securityContext"]

    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["args"] == ["serve", "--config", CONFIG_PATH]
    assert set(container["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]


def test_probes_hit_healthz_and_readyz_on_the_served_port() -> None:
    container = _container(render())
    port_names = {p["name"] for p in container["ports"]}

    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert port_names == {"http"}


@pytest.mark.parametrize(
    ("variant", "data_volume"), [("default", "emptyDir"), ("persistence", "persistentVolumeClaim")]
)
def test_only_the_data_dir_and_tmp_are_writable(variant: str, data_volume: str) -> None:
    rendered = render(VARIANTS[variant])
    pod, container = _pod_spec(rendered), _container(rendered)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    data_dir = rendered.guard_config["store"]["data_dir"]

    assert set(mounts) == {"/etc/deploy-guard", data_dir, "/tmp"}
    assert mounts["/etc/deploy-guard"]["readOnly"] is True
    assert volumes[mounts["/etc/deploy-guard"]["name"]]["configMap"]["name"] == FULLNAME
    assert data_volume in volumes[mounts[data_dir]["name"]]
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert list(rendered.one("ConfigMap")["data"]) == [Path(CONFIG_PATH).name]


def test_persistence_claims_a_volume_or_uses_an_existing_one() -> None:
    created = render(VARIANTS["persistence"])
    existing = render({"persistence": {"enabled": True, "existingClaim": "guard-data"}})

    claim = created.one("PersistentVolumeClaim")
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert existing.of_kind("PersistentVolumeClaim") == []
    volumes = {v["name"]: v for v in _pod_spec(existing)["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "guard-data"}


def test_several_replicas_share_postgresql_and_roll_pod_by_pod() -> None:
    rendered = render(VARIANTS["replicas-on-postgresql"])
    from_secret = render(
        {"replicaCount": 2, "secret": {"env": {"GUARD_STORE__URL": "postgresql://g:pw@db/g"}}}
    )

    for deployment in (rendered.one("Deployment"), from_secret.one("Deployment")):
        assert deployment["spec"]["strategy"] == {"type": "RollingUpdate"}
    assert rendered.one("Deployment")["spec"]["replicas"] == 3
    parse_config(rendered.guard_config)  # the guard accepts it


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 2}, r"postgresql:// URL all pods share"),
        (
            {
                "replicaCount": 2,
                "config": {"store": {"url": "postgresql://guard@db/guard"}},
                "persistence": {"enabled": True},
            },
            r"set persistence\.enabled to false",
        ),
    ],
)
def test_several_replicas_without_a_shared_store_fail(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        render(values)


def test_secret_env_becomes_a_secret_passed_as_environment() -> None:
    rendered = render(VARIANTS["secret-env"])
    secret = rendered.one("Secret")

    assert secret["stringData"] == {"GUARD_PROMETHEUS__URL": "https://guard:s3cret@prom:9090"}
    assert _container(rendered)["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    assert "s3cret" not in rendered.one("ConfigMap")["data"]["guard.yaml"]


def test_existing_secret_is_used_by_name_and_none_is_rendered() -> None:
    rendered = render(VARIANTS["existing-secret"])

    assert rendered.of_kind("Secret") == []
    assert _container(rendered)["envFrom"] == [{"secretRef": {"name": "guard-credentials"}}]


def test_no_secret_means_no_env_from() -> None:
    rendered = render()

    assert rendered.of_kind("Secret") == []
    assert "envFrom" not in _container(rendered)


def test_secret_env_and_existing_secret_together_fail() -> None:
    values = {"secret": {"existingSecret": "x", "env": {"GUARD_STORE__URL": "sqlite:////x"}}}

    with pytest.raises(helm.HelmRenderError, match=r"either secret\.env or secret\.existingSecret"):
        render(values)


def test_namespaced_rbac_is_a_role_per_watched_namespace() -> None:
    default = render()
    several = render(VARIANTS["several-namespaces"])

    assert [r["metadata"]["namespace"] for r in default.of_kind("Role")] == [NAMESPACE]
    assert [r["metadata"]["namespace"] for r in several.of_kind("Role")] == ["shop", "payments"]
    for binding in several.of_kind("RoleBinding"):
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": FULLNAME,
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
        ]
    assert several.of_kind("ClusterRole") == [] and several.of_kind("ClusterRoleBinding") == []


def test_cluster_wide_rbac_grants_the_same_rules_cluster_wide() -> None:
    namespaced = render().one("Role")
    cluster = render(VARIANTS["cluster-wide"])
    role = cluster.one("ClusterRole")
    binding = cluster.one("ClusterRoleBinding")

    assert rule_grants(role["rules"]) == rule_grants(namespaced["rules"])
    assert cluster.of_kind("Role") == [] and cluster.of_kind("RoleBinding") == []
    assert binding["roleRef"]["kind"] == "ClusterRole"
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    ]


def test_cluster_wide_with_namespaces_fails() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"leave it empty with rbac\.clusterWide"):
        render({"rbac": {"clusterWide": True, "namespaces": ["shop"]}})


def test_rbac_and_service_account_can_be_brought_by_the_platform() -> None:
    rendered = render(VARIANTS["no-rbac-existing-service-account"])
    kinds = {o["kind"] for o in rendered.objects}

    assert kinds.isdisjoint({"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"})
    assert "ServiceAccount" not in kinds
    assert _pod_spec(rendered)["serviceAccountName"] == "platform-guard"


def test_service_account_is_the_one_the_pod_runs_as() -> None:
    rendered = render()

    assert rendered.one("ServiceAccount")["metadata"]["name"] == FULLNAME
    assert _pod_spec(rendered)["serviceAccountName"] == FULLNAME
    assert _pod_spec(rendered)["automountServiceAccountToken"] is True


def test_service_reaches_the_pod() -> None:
    rendered = render()
    service = rendered.one("Service")
    pod_labels = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]

    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]


def test_servicemonitor_scrapes_the_guards_metrics() -> None:
    """ServiceMonitor is a Prometheus Operator CRD, absent from the official schemas; check the
    fields the operator needs and that they point at the Service's named port."""
    rendered = render(VARIANTS["servicemonitor-and-pdb"])
    monitor = rendered.one("ServiceMonitor")
    service = rendered.one("Service")

    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == NAMESPACE
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint == {
        "port": "http",
        "path": "/metrics",
        "interval": "30s",
        "scrapeTimeout": "10s",
    }
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert render().of_kind("ServiceMonitor") == []


def test_pdb_selects_the_guard_pod() -> None:
    rendered = render(VARIANTS["servicemonitor-and-pdb"])
    budget = rendered.one("PodDisruptionBudget")
    pod_labels = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]

    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert render().of_kind("PodDisruptionBudget") == []


def test_config_or_secret_change_rolls_the_pod() -> None:
    def checksums(values: dict[str, Any]) -> dict[str, str]:
        template = render(values).one("Deployment")["spec"]["template"]
        return {k: v for k, v in template["metadata"]["annotations"].items() if "checksum" in k}

    base = checksums({})
    tuned = checksums({"config": {"analysis": {"min_requests": 80}}})
    with_secret = checksums(VARIANTS["secret-env"])

    assert tuned["checksum/config"] != base["checksum/config"]
    assert with_secret["checksum/secret"] != base["checksum/secret"]


def test_readme_values_example_renders_valid_objects() -> None:
    readme = (CHART.parents[1] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(# deploy-guard-values\.yaml\n.*?)```", readme, re.DOTALL)
    assert block is not None, "README lost its deploy-guard-values.yaml example"
    rendered = render(yaml.safe_load(block.group(1)))

    parse_config(rendered.guard_config)
    for obj in rendered.objects:
        if obj["kind"] != "ServiceMonitor":
            kubernetes_validate.validate(obj, KUBE_VERSIONS[-1], strict=True)
    assert [r["metadata"]["namespace"] for r in rendered.of_kind("Role")] == ["shop", "payments"]


def test_image_defaults_to_the_app_version() -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]

    assert _container(render())["image"] == f"deploy-guard:{app_version}"
    assert _container(render(VARIANTS["custom-config"]))["image"] == "deploy-guard:0.1.0-rc1"
