"""Renders the Helm chart with Helm's own engine (helm-python-sdk), lints
it, validates every rendered object against Kubernetes' schemas
(kubernetes-validate, strict), and writes the rendered cluster file where
the Rust test can hand it to `neutrino plan --cluster`.

Usage: render.py CHART OUTPUT_DIR
"""

import sys

import helm_python as helm
import kubernetes_validate
import yaml

KUBERNETES = "1.31.0"


def main(chart_dir: str, output: str) -> int:
    chart = helm.Chart.load(chart_dir)
    chart.validate_schema({})
    failures = []
    cluster_file = None
    for values in ({}, {"metrics": {"service": False}, "agent": {"gateway": False, "physicalInterfaces": {}}}):
        rendered = chart.render(values, name="nt", namespace="neutrino-system", is_install=True)
        for path, text in sorted(rendered.items()):
            if path.endswith("NOTES.txt"):
                continue
            for document in yaml.safe_load_all(text):
                if not document:
                    continue
                name = f"{path}: {document['kind']} {document['metadata']['name']}"
                try:
                    kubernetes_validate.validate(document, KUBERNETES, strict=True)
                except kubernetes_validate.ValidationError as error:
                    failures.append(f"{name}: {error.message}")
                print(f"valid {name}")
                if document["kind"] == "ConfigMap" and cluster_file is None:
                    cluster_file = document["data"]["cluster.yaml"]
    lint = helm.lint(chart_dir, strict=True, kube_version=f"v{KUBERNETES}")
    for message in lint["messages"]:
        print(f"lint: {message['path']}: {message['error']}")
        if message["severity"] >= 2:
            failures.append(f"helm lint: {message['path']}: {message['error']}")
    failures.extend(f"helm lint: {error}" for error in lint["errors"])
    with open(f"{output}/cluster.yaml", "w") as out:
        out.write(cluster_file)
    for failure in failures:
        print(f"INVALID {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
