"""The optional cert-manager component, as rendered in prod with it switched on.

The variant passes every check the overlays get (conftest.VARIANTS). kubernetes-validate has no
schemas for cert-manager's custom resources, so test_k8s_manifests.py skips them by name
(CUSTOM_KINDS) and this file checks them instead: their fields against the v1 CRDs, and that the
Certificate gives prod the Secret, the names and the usages its mutual TLS needs.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Obj, Rendered

TLS_SECRET = "fanline-tls"
TLS_KEYS = {"FANLINE_TLS_CERT": "tls.crt", "FANLINE_TLS_KEY": "tls.key", "FANLINE_TLS_CA": "ca.crt"}
API = "cert-manager.io/v1"
# The fields of cert-manager.io/v1 (its CRDs' openAPIV3Schema), enough to catch a misspelt key.
CERTIFICATE_SPEC = {
    "additionalOutputFormats", "commonName", "dnsNames", "duration", "emailAddresses",
    "encodeUsagesInRequest", "ipAddresses", "isCA", "issuerRef", "keystores", "literalSubject",
    "nameConstraints", "otherNames", "privateKey", "renewBefore", "renewBeforePercentage",
    "revisionHistoryLimit", "secretName", "secretTemplate", "signatureAlgorithm", "subject", "uris",
    "usages",
}
PRIVATE_KEY = {"algorithm": {"RSA", "ECDSA", "Ed25519"}, "encoding": {"PKCS1", "PKCS8"},
               "rotationPolicy": {"Never", "Always"}}
KEY_SIZES = {"RSA": {2048, 4096, 8192}, "ECDSA": {256, 384, 521}}
USAGES = {
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
    "server auth", "client auth", "code signing", "email protection", "s/mime", "ipsec end system",
    "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc",
}
ISSUER_TYPES = {"acme", "ca", "selfSigned", "vault", "venafi"}
CA_ISSUER = {"secretName", "crlDistributionPoints", "issuingCertificateURLs", "ocspServers"}
# How long the running pods keep a certificate that cert-manager has already renewed: the
# services read the files at start, so someone (or a reloader) must roll them in this window.
MIN_RESTART_WINDOW_H = 7 * 24


def certificate(rendered: Rendered) -> Obj:
    (cert,) = rendered.of_kind("Certificate")
    return cert


def hours(duration: str) -> float:
    """A Go time.Duration string (as cert-manager takes) in hours: 2160h, 90m, 1h30m."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a Go duration: {duration!r}"
    return sum(float(n) * {"h": 1, "m": 1 / 60, "s": 1 / 3600}[u] for n, u in parts)


def fanline_services(rendered: Rendered) -> set[str]:
    return {
        s["metadata"]["name"]
        for s in rendered.of_kind("Service")
        if s["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "fanline"
    }


def test_component_is_optional(prod: Rendered, dev: Rendered, dev_cluster: Rendered) -> None:
    for rendered in (prod, dev, dev_cluster):
        assert not [o for o in rendered.objects if o["apiVersion"].startswith("cert-manager.io/")]


def test_only_known_custom_kinds_are_rendered(prod_cert_manager: Rendered) -> None:
    objects = prod_cert_manager.objects
    custom = {(o["apiVersion"], o["kind"]) for o in objects if "cert-manager" in o["apiVersion"]}
    # Exactly what test_k8s_manifests.CUSTOM_KINDS skips, and this file checks.
    assert custom == {(API, "Certificate"), (API, "Issuer")}
    for obj in prod_cert_manager.objects:
        if "cert-manager" in obj["apiVersion"]:
            assert obj["metadata"]["namespace"] == prod_cert_manager.namespace


def test_certificate_uses_known_fields(prod_cert_manager: Rendered) -> None:
    spec = certificate(prod_cert_manager)["spec"]
    assert set(spec) <= CERTIFICATE_SPEC, set(spec) - CERTIFICATE_SPEC
    assert {"secretName", "issuerRef"} <= set(spec)
    assert set(spec["issuerRef"]) <= {"group", "kind", "name"}
    key = spec["privateKey"]
    assert set(key) <= {*PRIVATE_KEY, "size"}
    for field, allowed in PRIVATE_KEY.items():
        assert field not in key or key[field] in allowed, field
    if key["algorithm"] in KEY_SIZES:
        assert key["size"] in KEY_SIZES[key["algorithm"]]
    assert set(spec["usages"]) <= USAGES, set(spec["usages"]) - USAGES
    assert set(spec.get("secretTemplate", {})) <= {"labels", "annotations"}


def test_certificate_writes_the_secret_prod_mounts(prod_cert_manager: Rendered) -> None:
    assert certificate(prod_cert_manager)["spec"]["secretName"] == TLS_SECRET
    # The files the roles read (test_k8s_manifests: from the mounted fanline-tls) are the keys
    # cert-manager writes; a CA issuer fills ca.crt too.
    config = prod_cert_manager.config
    assert {config[s].rpartition("/")[2] for s in TLS_KEYS} == {"tls.crt", "tls.key", "ca.crt"}


def test_certificate_names_every_service_the_suite_answers_on(prod_cert_manager: Rendered) -> None:
    ns = prod_cert_manager.namespace
    services = fanline_services(prod_cert_manager)
    dialed = {
        prod_cert_manager.config[f"FANLINE_{r}_ADDR"].rpartition(":")[0]
        for r in ("POST", "FANOUT", "TIMELINE", "WORKER")
    }
    assert dialed == services
    # Short names for the roles (and callers in the namespace), qualified ones for callers in
    # labelled client namespaces; nothing else, no wildcard.
    expected = {
        name
        for s in services
        for name in (s, f"{s}.{ns}", f"{s}.{ns}.svc", f"{s}.{ns}.svc.cluster.local")
    }
    names = certificate(prod_cert_manager)["spec"]["dnsNames"]
    assert len(names) == len(set(names))
    assert set(names) == expected, set(names) ^ expected


def test_certificate_serves_both_ends_of_mutual_tls(prod_cert_manager: Rendered) -> None:
    spec = certificate(prod_cert_manager)["spec"]
    # One certificate, presented as server and as client.
    assert {"server auth", "client auth"} <= set(spec["usages"])
    assert not spec.get("isCA")
    # An ECDSA key signs; "key encipherment" is for RSA key exchange.
    if spec["privateKey"]["algorithm"] != "RSA":
        assert "key encipherment" not in spec["usages"]
    assert spec["privateKey"].get("rotationPolicy") == "Always"


def test_certificate_renews_with_time_left_to_roll_the_pods(prod_cert_manager: Rendered) -> None:
    spec = certificate(prod_cert_manager)["spec"]
    duration, renew_before = hours(spec["duration"]), hours(spec["renewBefore"])
    assert 24 <= duration <= 397 * 24
    assert MIN_RESTART_WINDOW_H <= renew_before < duration


def test_issuer_is_a_ca_whose_key_never_reaches_the_pods(prod_cert_manager: Rendered) -> None:
    ref = certificate(prod_cert_manager)["spec"]["issuerRef"]
    assert ref.get("group", "cert-manager.io") == "cert-manager.io"
    assert ref.get("kind", "Issuer") == "Issuer"
    issuer = prod_cert_manager.get("Issuer", ref["name"])
    spec = issuer["spec"]
    assert set(spec) <= ISSUER_TYPES and len(spec) == 1, spec
    # A CA issuer: it puts its certificate in ca.crt, which FANLINE_TLS_CA trusts.
    assert set(spec["ca"]) <= CA_ISSUER and spec["ca"]["secretName"]
    ca_secret = spec["ca"]["secretName"]
    assert ca_secret != TLS_SECRET
    for workload in prod_cert_manager.workloads:
        for volume in workload["spec"]["template"]["spec"].get("volumes", []):
            assert volume.get("secret", {}).get("secretName") != ca_secret, workload["metadata"]["name"]
