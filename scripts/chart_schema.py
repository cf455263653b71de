"""Write the `config` part of the Helm chart's values.schema.json from guard/config.py.

The chart renders `.Values.config` as the guard's guard.yaml, and the guard rejects unknown keys;
deriving the chart's schema from the same pydantic models means a typo or a wrong type fails at
`helm install`, not in a crash-looping pod. Run it after changing guard/config.py:

    .venv/bin/python scripts/chart_schema.py            # rewrite the schema
    .venv/bin/python scripts/chart_schema.py --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from guard.config import GuardConfig

CHART = Path(__file__).resolve().parent.parent / "helm" / "deploy-guard"
SCHEMA_PATH = CHART / "values.schema.json"


def config_schema() -> dict[str, Any]:
    """GuardConfig's JSON schema, self-contained (no $ref), as the chart's `config` value."""
    schema = GuardConfig.model_json_schema()
    definitions = schema.pop("$defs", {})
    resolved: dict[str, Any] = _clean(_inline(schema, definitions))
    # `services.NAME.analysis` is a free mapping in the model, merged into `analysis` and then
    # validated as one; give it the same schema here so a per-service typo fails at install.
    service = resolved["properties"]["services"]["additionalProperties"]
    analysis = {k: v for k, v in resolved["properties"]["analysis"].items() if k != "default"}
    description = "Overrides of the global analysis section, merged key by key"
    service["properties"]["analysis"] = {**analysis, "description": description}
    return resolved


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = definitions[node["$ref"].rsplit("/", 1)[-1]]
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return _inline(merged, definitions)
        return {key: _inline(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    return node


def _clean(node: Any) -> Any:
    """Drop titles (noise) and `required`: the guard fills every key left out from its defaults,
    and merges a partial `analysis` (even half a tier) into them, so nothing is required."""
    if isinstance(node, dict):
        return {
            key: _clean(value)
            for key, value in node.items()
            if key not in ("title", "required") or isinstance(value, dict)
        }
    if isinstance(node, list):
        return [_clean(item) for item in node]
    return node


def rendered() -> str:
    values_schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    values_schema["properties"]["config"] = config_schema()
    return json.dumps(values_schema, indent=2) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, exit 1 if stale")
    args = parser.parse_args()
    wanted = rendered()
    if SCHEMA_PATH.read_text(encoding="utf-8") == wanted:
        print(f"{SCHEMA_PATH.name}: up to date with guard/config.py")
        return 0
    if args.check:
        print(
            f"{SCHEMA_PATH.name} is out of date with guard/config.py; "
            "run .venv/bin/python scripts/chart_schema.py",
            file=sys.stderr,
        )
        return 1
    SCHEMA_PATH.write_text(wanted, encoding="utf-8")
    print(f"{SCHEMA_PATH.name}: config schema rewritten from guard/config.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
