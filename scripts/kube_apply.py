"""Apply a multi-document YAML file with the Kubernetes client (there is no kubectl here): create each
object, or replace it when it exists. usage: kube_apply.py KUBECONFIG FILE"""

from __future__ import annotations

import sys

import yaml
from kubernetes import client, config, utils
from kubernetes.utils import FailToCreateError


def main(kubeconfig: str, path: str) -> None:
    api = config.new_client_from_config(config_file=kubeconfig)
    with open(path) as handle:
        documents = [d for d in yaml.safe_load_all(handle) if d]
    for document in documents:
        try:
            utils.create_from_dict(api, document)
        except FailToCreateError as exc:
            if not all(isinstance(e, client.ApiException) and e.status == 409 for e in exc.api_exceptions):
                raise
    print(f"applied {len(documents)} objects from {path}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
