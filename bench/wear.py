"""How our namespaces wear a RabbitMQ node: descriptors, memory and answers per declared namespace, on a private node.

`python -m bench.wear --limit 1024` starts a private node (services/cli/local_broker.py: its own name, ports and
data directory under ERASURE_VAR_DIR) with that descriptor limit, declares one production-shaped namespace after
another (every queue quorum, as the services declare them), reads the node's headroom after each, stops when the
node no longer answers, then deletes them all and reads it once more. It never touches the system broker.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from typing import Any

import kombu

from ops import headroom
from services.cli.local_broker import broker_answers, private_node, rabbitmq_server
from shared.consumer import full_topology
from shared.settings import RuntimeSettings
from shared.testing.namespaces import delete_namespace_names, namespace_exchanges
from shared.topology import declare


def wear(port: int, limit: int, most: int) -> dict[str, Any]:
    """Declare up to `most` namespaces on a private node limited to `limit` descriptors; the figures after each."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))  # inherited by the node started below
    settings = RuntimeSettings(amqp_url=f"amqp://guest:guest@127.0.0.1:{port}/%2F")
    server = rabbitmq_server()
    if server is None:
        raise SystemExit("rabbitmq-server is not installed here")
    steps: list[dict[str, Any]] = []
    declared: list[str] = []
    result: dict[str, Any] = {"limit": limit, "steps": steps}
    with private_node(settings, server):
        result["fresh"] = headroom.read(settings.amqp_url).as_dict()
        for index in range(most):
            namespace = f"wear{index:02d}"
            topology = full_topology(settings.model_copy(update={"namespace": namespace}))
            started = time.monotonic()
            try:
                with kombu.Connection(settings.amqp_url, connect_timeout=10) as conn:
                    declare(conn.default_channel, topology)
                declared.append(namespace)
                figures: dict[str, Any] = headroom.read(settings.amqp_url).as_dict()
            except Exception as exc:  # the node refusing or hanging is the finding, not a failure of the tool
                figures = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            figures.update(namespaces=index + 1, queues_declared=len(topology.queues) * (index + 1),
                           declare_s=round(time.monotonic() - started, 2),
                           answers=broker_answers(settings, timeout=10))
            steps.append(figures)
            print(json.dumps(figures), flush=True)
            if "error" in figures or not figures["answers"]:
                break
        if broker_answers(settings, timeout=10):
            for namespace in declared:
                topo = full_topology(settings.model_copy(update={"namespace": namespace}))
                delete_namespace_names(settings.amqp_url, [q.name for q in topo.queues],
                                       namespace_exchanges(namespace))
            time.sleep(2)
            result["after_delete"] = headroom.read(settings.amqp_url).as_dict()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return result


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run, print the figures as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.wear", description=__doc__)
    parser.add_argument("--port", type=int, default=5790, help="AMQP port of the private node (default 5790)")
    parser.add_argument("--limit", type=int, default=1024, help="the node's descriptor limit (default 1024)")
    parser.add_argument("--most", type=int, default=30, help="namespaces to declare at most (default 30)")
    args = parser.parse_args(argv)
    print(json.dumps(wear(args.port, args.limit, args.most), indent=1))


if __name__ == "__main__":
    main()
