#!/usr/bin/env python3
"""Checks one `helm template` rendering of helm/callauth:

1. validates every manifest against the Kubernetes OpenAPI schemas shipped by
   the PyPI package kubernetes-validate, in strict mode (unknown fields are
   errors), for the given Kubernetes version. The Prometheus Operator kinds
   (ServiceMonitor, PrometheusRule) have no schema there: the validator
   reports them as SchemaNotFoundError, and only those two kinds are skipped
   (and said so); any other kind without a schema fails;
2. asserts what the chart promises (probes, replicas vs autoscaler,
   securityContext everywhere, hooks, shards, dashboard label, one source of
   rules, …), with the expectations of the case given as options.

Runs with the tools venv's python (it needs PyYAML and kubernetes_validate):

    check-manifests.py rendered.yaml --kube 1.35.0 [--hpa] [--crds] [--shards N]
        [--existing-secret NAME] [--no-settlement] [--rules FILE] [--dashboard FILE]
        [--tls SECRET]
"""
import argparse
import json
import sys

import yaml
import kubernetes_validate
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
HOOK_EVENTS = "pre-install,pre-upgrade"

failures = []


def fail(msg):
    failures.append(msg)


def name_of(doc):
    return f'{doc["kind"]}/{doc["metadata"]["name"]}'


def validate(docs, kube):
    skipped = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, kube, strict=True)
        except SchemaNotFoundError:
            if doc["kind"] in OPERATOR_KINDS:
                skipped.append(name_of(doc))
            else:
                fail(f"{name_of(doc)}: no Kubernetes {kube} schema for {doc['apiVersion']} {doc['kind']}")
        except ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            fail(f"{name_of(doc)}: schema {kube}: {path}: {e.message}")
    return skipped


def containers(pod_spec):
    return pod_spec.get("initContainers", []) + pod_spec.get("containers", [])


def check_security(doc, pod_spec):
    psc = pod_spec.get("securityContext") or {}
    if psc.get("runAsNonRoot") is not True:
        fail(f"{name_of(doc)}: pod securityContext.runAsNonRoot is not true")
    if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        fail(f"{name_of(doc)}: pod seccompProfile is not RuntimeDefault")
    if pod_spec.get("automountServiceAccountToken") is not False:
        fail(f"{name_of(doc)}: automountServiceAccountToken is not false")
    for c in containers(pod_spec):
        sc = c.get("securityContext") or {}
        where = f"{name_of(doc)} container {c['name']}"
        if sc.get("runAsNonRoot") is not True:
            fail(f"{where}: runAsNonRoot is not true")
        if sc.get("readOnlyRootFilesystem") is not True:
            fail(f"{where}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            fail(f"{where}: allowPrivilegeEscalation is not false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            fail(f"{where}: capabilities do not drop ALL")
        if (sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            fail(f"{where}: seccompProfile is not RuntimeDefault")
        if not (c.get("resources") or {}).get("requests"):
            fail(f"{where}: no resource requests")


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def check_tls(doc, pod_spec, container, secret):
    """TLS on: the serving Secret mounted whole (a subPath mount would never
    see a renewed certificate), the flags pointing into it, HTTPS probes."""
    where = name_of(doc)
    env = env_of(container)
    mounts = {m["name"]: m for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    tls = mounts.get("tls")
    if not tls or (volumes.get("tls", {}).get("secret") or {}).get("secretName") != secret:
        fail(f"{where}: the TLS Secret {secret} is not mounted as volume 'tls'")
    elif "subPath" in tls:
        fail(f"{where}: the TLS Secret is mounted with subPath (renewals would not reach the pod)")
    else:
        for var, file in (("CALLAUTH_TLS_CERT", "tls.crt"), ("CALLAUTH_TLS_KEY", "tls.key")):
            if env.get(var, {}).get("value") != f'{tls["mountPath"]}/{file}':
                fail(f"{where}: {var} does not point to {file} in the mounted Secret")
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("scheme") != "HTTPS" or get.get("path") != path:
            fail(f"{where}: with TLS, {probe} must be an HTTPS GET of {path} (the kubelet's gRPC probe has no TLS)")
    for m in container.get("volumeMounts", []):
        v = volumes.get(m["name"], {})
        if "secret" in v and "subPath" in m:
            fail(f"{where}: Secret volume {m['name']} mounted with subPath")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rendered")
    ap.add_argument("--kube", required=True)
    ap.add_argument("--hpa", action="store_true", help="autoscaling is on")
    ap.add_argument("--crds", action="store_true", help="the Operator CRDs were announced")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--existing-secret", default="")
    ap.add_argument("--no-settlement", action="store_true")
    ap.add_argument("--rules", help="the plain rules file the PrometheusRule must equal")
    ap.add_argument("--runbook-base", default="docs/runbook.md",
                    help="metrics.prometheusRule.runbookBaseUrl of the case, if set")
    ap.add_argument("--dashboard", help="the dashboard JSON the ConfigMap must carry")
    ap.add_argument("--tls", default="", help="tls.enabled with this tls.secretName")
    args = ap.parse_args()

    with open(args.rendered, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    names = [name_of(d) for d in docs]
    for n in set(names):
        if names.count(n) > 1:
            fail(f"{n} is rendered {names.count(n)} times")

    skipped = validate(docs, args.kube)

    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    gateways = [d for d in deployments.values() if d["metadata"]["labels"].get("app.kubernetes.io/component") == "gateway"]
    settlements = sorted(
        (d for d in deployments.values() if d["metadata"]["labels"].get("app.kubernetes.io/component") == "settlement"),
        key=lambda d: int(d["metadata"]["labels"].get("callauth.io/shard", "0")),
    )
    if len(gateways) != 1:
        fail(f"expected one gateway Deployment, got {len(gateways)}")
    secrets = {d["metadata"]["name"]: d for d in by_kind.get("Secret", [])}
    configmaps = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}

    # Every pod: security, resources, Secret and ConfigMap references.
    pods = [(d, d["spec"]["template"]) for d in by_kind.get("Deployment", []) + by_kind.get("Job", [])]
    for doc, tpl in pods:
        spec = tpl["spec"]
        check_security(doc, spec)
        is_hook = "helm.sh/hook" in doc["metadata"].get("annotations", {})
        for c in containers(spec):
            for e in c.get("env", []):
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if not ref:
                    continue
                if args.existing_secret:
                    if ref["name"] != args.existing_secret:
                        fail(f"{name_of(doc)}: reads Secret {ref['name']}, not the existing Secret")
                    continue
                target = secrets.get(ref["name"])
                if target is None:
                    fail(f"{name_of(doc)}: reads Secret {ref['name']}, which is not rendered")
                    continue
                if ref["key"] not in (target.get("stringData") or {}):
                    fail(f"{name_of(doc)}: Secret {ref['name']} has no key {ref['key']}")
                target_is_hook = "helm.sh/hook" in target["metadata"].get("annotations", {})
                if is_hook and not target_is_hook:
                    fail(f"{name_of(doc)} is a hook but reads Secret {ref['name']}, which does not exist yet on install")
            for src in c.get("envFrom", []):
                cm = (src.get("configMapRef") or {}).get("name")
                if cm and cm not in configmaps:
                    fail(f"{name_of(doc)}: envFrom ConfigMap {cm} is not rendered")
        if doc["kind"] == "Deployment":
            ann = tpl["metadata"].get("annotations", {})
            if "checksum/config" not in ann:
                fail(f"{name_of(doc)}: no checksum/config pod annotation")
            if not args.existing_secret and "checksum/secret" not in ann:
                fail(f"{name_of(doc)}: no checksum/secret pod annotation")
            if not spec.get("topologySpreadConstraints"):
                fail(f"{name_of(doc)}: no topologySpreadConstraints")

    # The gateway: probes, listen address, replicas vs HPA, grace period.
    for gw in gateways:
        spec = gw["spec"]["template"]["spec"]
        c = spec["containers"][0]
        if args.tls:
            check_tls(gw, spec, c, args.tls)
        else:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if "grpc" not in c.get(probe, {}):
                    fail(f"{name_of(gw)}: {probe} is not a native gRPC probe")
            if c.get("livenessProbe", {}).get("grpc", {}).get("service") != "":
                fail(f'{name_of(gw)}: liveness must check gRPC service ""')
            if c.get("readinessProbe", {}).get("grpc", {}).get("service") != "callauth.v1.Authorization":
                fail(f"{name_of(gw)}: readiness must check callauth.v1.Authorization")
            if any(e["name"].startswith("CALLAUTH_TLS_") for e in c.get("env", [])):
                fail(f"{name_of(gw)}: TLS flags set although tls.enabled is off")
        cm = configmaps.get(c["envFrom"][0]["configMapRef"]["name"], {}).get("data", {})
        if not cm.get("CALLAUTH_GRPC_LISTEN", "").startswith("0.0.0.0:"):
            fail(f"{name_of(gw)}: CALLAUTH_GRPC_LISTEN is not 0.0.0.0:port")
        grace = int(cm.get("CALLAUTH_SHUTDOWN_GRACE_SECONDS", "10"))
        pre = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        if spec.get("terminationGracePeriodSeconds", 30) <= grace + pre:
            fail(f"{name_of(gw)}: terminationGracePeriodSeconds is not above preStop + shutdown grace")
        hpas = by_kind.get("HorizontalPodAutoscaler", [])
        if args.hpa:
            if "replicas" in gw["spec"]:
                fail(f"{name_of(gw)}: replicas is set although the autoscaler is on")
            if len(hpas) != 1 or hpas[0]["spec"]["scaleTargetRef"]["name"] != gw["metadata"]["name"]:
                fail("expected one HorizontalPodAutoscaler targeting the gateway")
        else:
            if "replicas" not in gw["spec"]:
                fail(f"{name_of(gw)}: replicas missing without an autoscaler")
            if hpas:
                fail("a HorizontalPodAutoscaler is rendered although autoscaling is off")
    if not by_kind.get("PodDisruptionBudget"):
        fail("no PodDisruptionBudget")
    services = {d["metadata"]["name"]: d for d in by_kind.get("Service", [])}
    if not any(s["spec"].get("clusterIP") == "None" for s in services.values()):
        fail("no headless Service")
    if not any(s["spec"].get("type") == "ClusterIP" and s["spec"].get("clusterIP") != "None" for s in services.values()):
        fail("no ClusterIP Service")

    # Settlement: one Deployment per shard.
    if args.no_settlement:
        if settlements:
            fail("settlement Deployments rendered although settlement is off")
    else:
        if len(settlements) != args.shards:
            fail(f"expected {args.shards} settlement Deployment(s), got {len(settlements)}")
        consumers = set()
        for i, d in enumerate(settlements):
            c = d["spec"]["template"]["spec"]["containers"][0]
            env = env_of(c)
            if d["spec"].get("replicas") != 1:
                fail(f"{name_of(d)}: replicas is not 1")
            if d["spec"].get("strategy", {}).get("type") != "Recreate":
                fail(f"{name_of(d)}: strategy is not Recreate (two consumers would share its partitions)")
            consumer = env.get("CALLAUTH_CONSUMER_NAME", {}).get("value")
            if not consumer or consumer in consumers:
                fail(f"{name_of(d)}: CALLAUTH_CONSUMER_NAME missing or not unique")
            consumers.add(consumer)
            if env.get("CALLAUTH_REPLICA_INDEX", {}).get("value") != str(i):
                fail(f"{name_of(d)}: CALLAUTH_REPLICA_INDEX is not {i}")
            if env.get("CALLAUTH_REPLICA_COUNT", {}).get("value") != str(args.shards):
                fail(f"{name_of(d)}: CALLAUTH_REPLICA_COUNT is not {args.shards}")
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe not in c:
                    fail(f"{name_of(d)}: no {probe}")
            if args.tls:
                check_tls(d, d["spec"]["template"]["spec"], c, args.tls)
            if d["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30) <= 15:
                fail(f"{name_of(d)}: terminationGracePeriodSeconds must exceed the worker's 15 s drain")

    # Hooks: annotated, ordered after the hook Secret they read.
    jobs = by_kind.get("Job", [])
    expected_jobs = 1 if args.no_settlement else 2
    if len(jobs) != expected_jobs:
        fail(f"expected {expected_jobs} hook Job(s), got {len(jobs)}")
    for j in jobs:
        ann = j["metadata"].get("annotations", {})
        if ann.get("helm.sh/hook") != HOOK_EVENTS:
            fail(f"{name_of(j)}: not a {HOOK_EVENTS} hook")
        if "helm.sh/hook-weight" not in ann or "helm.sh/hook-delete-policy" not in ann:
            fail(f"{name_of(j)}: hook weight or delete policy missing")
        for c in containers(j["spec"]["template"]["spec"]):
            for e in c.get("env", []):
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ref["name"] in secrets:
                    s_ann = secrets[ref["name"]]["metadata"].get("annotations", {})
                    if int(s_ann.get("helm.sh/hook-weight", "0")) >= int(ann.get("helm.sh/hook-weight", "0")):
                        fail(f"{name_of(j)}: its Secret {ref['name']} is not a hook of lower weight")
    if args.existing_secret and secrets:
        fail(f"Secrets rendered although existingSecret is used: {sorted(secrets)}")

    # Operator objects only when the CRDs are there; the rules are the file.
    for kind in OPERATOR_KINDS:
        n = len(by_kind.get(kind, []))
        if args.crds and n != 1:
            fail(f"expected one {kind} with the Operator CRDs, got {n}")
        if not args.crds and n:
            fail(f"{kind} rendered although monitoring.coreos.com/v1 is absent")
    if args.crds and args.rules and by_kind.get("PrometheusRule"):
        with open(args.rules, encoding="utf-8") as f:
            plain = yaml.safe_load(f.read().replace("runbook_url: docs/runbook.md", f"runbook_url: {args.runbook_base}"))
        if by_kind["PrometheusRule"][0]["spec"] != plain:
            fail("the PrometheusRule's spec differs from the plain rules file")

    # The ServiceMonitor scrapes HTTPS when the listeners serve TLS only.
    for sm in by_kind.get("ServiceMonitor", []):
        for ep in sm["spec"]["endpoints"]:
            scheme = ep.get("scheme", "http")
            if scheme != ("https" if args.tls else "http"):
                fail(f"{name_of(sm)}: scrapes {scheme} although TLS is {'on' if args.tls else 'off'}")
            if args.tls and (ep.get("tlsConfig", {}).get("ca", {}).get("secret", {}).get("name") != args.tls):
                fail(f"{name_of(sm)}: does not trust the TLS Secret's ca.crt")

    # The dashboard ConfigMap for the Grafana sidecar.
    dash = [c for c in configmaps.values() if c["metadata"]["labels"].get("grafana_dashboard") == "1"]
    if len(dash) != 1:
        fail('expected one ConfigMap labelled grafana_dashboard: "1"')
    elif args.dashboard:
        with open(args.dashboard, encoding="utf-8") as f:
            if json.loads(dash[0]["data"]["callauth.json"]) != json.load(f):
                fail("the dashboard ConfigMap differs from dashboards/callauth.json")

    kinds = ", ".join(f"{k}×{len(v)}" for k, v in sorted(by_kind.items()))
    if skipped:
        print(f"    schema {args.kube}: skipped (no schema, Operator CRD): {', '.join(skipped)}")
    if failures:
        for f_ in failures:
            print(f"    FAIL {f_}")
        return 1
    print(f"    {len(docs)} manifests valid against Kubernetes {args.kube} (strict); assertions hold [{kinds}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
