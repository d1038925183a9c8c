"""The service's OpenAPI 3.1 document, written by hand so it says exactly what the handlers accept."""

from __future__ import annotations

from typing import Any

_ERROR = {"description": "what was wrong and what to do",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document(version: str) -> dict[str, Any]:
    ref = {"Env": {"$ref": "#/components/schemas/Env"}, "Run": {"$ref": "#/components/schemas/Run"}}
    errors = {"400": _ERROR, "401": _ERROR, "404": _ERROR, "500": _ERROR}
    too_large = {"413": _ERROR}
    return {
        "openapi": "3.1.0",
        "info": {"title": "cwm service", "version": version,
                 "description": "Learn Code World Models of environments as a long-lived agent."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"],
                          "properties": {"error": {"type": "string"}, "hint": {"type": "string"}}},
                "Env": {"type": "object", "required": ["id", "status"], "properties": {
                    "id": {"type": "string"}, "gym_id": {"type": ["string", "null"]},
                    "env_kwargs": {"type": "object"},
                    "status": {"enum": ["collecting", "ready", "failed"]},
                    "transitions": {"type": ["integer", "null"]}, "error": {"type": ["string", "null"]}}},
                "EnvRequest": {"type": "object", "required": ["gym_id"], "additionalProperties": False,
                               "properties": {
                    "gym_id": {"type": "string"}, "env_kwargs": {"type": "object"}, "name": {"type": "string"},
                    "description": {"type": "string", "maxLength": 64000},
                    "trajectories": {"type": "integer", "minimum": 1, "maximum": 100},
                    "max_steps": {"type": "integer", "minimum": 1, "maximum": 1000}}},
                "RunRequest": {"type": "object", "required": ["env"], "additionalProperties": False, "properties": {
                    "env": {"type": "string"}, "llm": {"type": "string"},
                    "budget": {"type": "integer", "minimum": 1, "maximum": 500},
                    "method": {"enum": ["gif-mcts", "gif-mcts-paper", "worldcoder", "best-of-n"]},
                    "concurrency": {"type": "integer", "minimum": 1, "maximum": 32},
                    "plan": {"oneOf": [{"const": False}, {"type": "integer", "minimum": 1}]},
                    "seed": {"type": "integer", "minimum": 0},
                    "describe": {"enum": ["docs+facts", "docs"]},
                    "allow_import": {"type": "array", "items": {"type": "string"}},
                    "nodes": {"type": "array", "items": {"type": "string"},
                              "description": "registered node types (`cwm nodes`)"}}},
                "Run": {"type": "object", "required": ["id", "status"], "properties": {
                    "id": {"type": "string"}, "env": {"type": "string"},
                    "status": {"enum": ["queued", "running", "done", "failed", "cancelled"]},
                    "summary": {"type": ["object", "null"],
                                "description": "the keys of `cwm synthesize --json` once known"},
                    "error": {"type": ["string", "null"]}}},
                "CheckRequest": {"type": "object", "required": ["env", "program"], "additionalProperties": False,
                                 "properties": {
                    "env": {"type": "string"}, "program": {"type": "string"},
                    "max_failures": {"type": "integer", "minimum": 0, "maximum": 100}}},
                "PlanRequest": {"type": "object", "required": ["env"], "additionalProperties": False,
                                "description": "exactly one of program and run", "properties": {
                    "env": {"type": "string"}, "program": {"type": "string"}, "run": {"type": "string"},
                    "episodes": {"type": "integer", "minimum": 1}, "seed": {"type": "integer"}}},
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/": {"get": {"summary": "the web page (static; it asks the API with ?token=)", "security": [],
                          "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}}}},
            "/openapi.json": {"get": {"summary": "this document", "responses": {"200": _json({})}}},
            "/healthz": {"get": {"summary": "liveness", "security": [], "responses": {"200": _json({})}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
                "200": {"description": "text exposition format", "content": {"text/plain": {}}}}}},
            "/v1/envs": {
                "get": {"summary": "registered environments", "responses": {"200": _json(
                    {"type": "object", "properties": {"envs": {"type": "array", "items": ref["Env"]}}})}},
                "post": {"summary": "register an environment by gym id (collects data) or upload a dataset",
                         "requestBody": {"content": {
                             "application/json": {"schema": {"$ref": "#/components/schemas/EnvRequest"}},
                             "multipart/form-data": {"schema": {"type": "object", "required": [
                                 "dataset", "description"], "properties": {
                                 "dataset": {"type": "string", "format": "binary"},
                                 "description": {"type": "string"}, "name": {"type": "string"},
                                 "gym_id": {"type": "string"}}}}}},
                         "responses": {"201": _json(ref["Env"], "ready"),
                                       "202": _json(ref["Env"], "collecting"), **errors, **too_large}}},
            "/v1/envs/{id}": {"get": {"summary": "one environment", "parameters": [_path("id")],
                                      "responses": {"200": _json(ref["Env"]), **errors}}},
            "/v1/envs/{id}/transitions": {"post": {
                "summary": "append recorded transitions (training, or held-out) and re-check the latest run",
                "parameters": [_path("id")],
                "requestBody": {"content": {"multipart/form-data": {"schema": {"type": "object", "required": [
                    "dataset"], "properties": {"dataset": {"type": "string", "format": "binary"},
                                               "heldout": {"enum": ["true", "false"]},
                                               "repair_budget": {"type": "integer", "minimum": 0,
                                                                 "maximum": 100}}}}}},
                "responses": {"200": _json({"type": "object"}), "409": _ERROR, **errors, **too_large}}},
            "/v1/runs": {
                "get": {"summary": "all runs", "responses": {"200": _json(
                    {"type": "object", "properties": {"runs": {"type": "array", "items": ref["Run"]}}})}},
                "post": {"summary": "start a search", "requestBody": {"content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/RunRequest"}}}},
                    "responses": {"202": _json({"type": "object", "properties": {"id": {"type": "string"}}}),
                                  "403": _ERROR, "409": _ERROR, **errors}}},
            "/v1/runs/{id}": {
                "get": {"summary": "a run's status and summary", "parameters": [_path("id")],
                        "responses": {"200": _json(ref["Run"]), **errors}},
                "delete": {"summary": "cancel a queued or running run", "parameters": [_path("id")],
                           "responses": {"200": _json(ref["Run"]), "409": _ERROR, **errors}}},
            "/v1/runs/{id}/program": {"get": {"summary": "the run's best program", "parameters": [_path("id")],
                                              "responses": {"200": {"description": "Python source",
                                                                    "content": {"text/x-python": {}}},
                                                            **errors}}},
            "/v1/runs/{id}/tree": {"get": {"summary": "the search tree", "parameters": [_path("id")],
                                           "responses": {"200": _json({"type": "object"}), **errors}}},
            "/v1/runs/{id}/events": {"get": {
                "summary": "Server-Sent Events of the run's trace from its start; Last-Event-ID resumes",
                "parameters": [_path("id"), {"name": "Last-Event-ID", "in": "header", "required": False,
                                             "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "event stream", "content": {"text/event-stream": {}}},
                              **errors}}},
            "/v1/check": {"post": {"summary": "score a program on an environment's data", "requestBody": {
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CheckRequest"}}}},
                "responses": {"200": _json({"type": "object"}), "409": _ERROR, **errors, **too_large}}},
            "/v1/plan": {"post": {"summary": "plan with a program (or a run's best) in the real environment",
                                  "requestBody": {"content": {"application/json": {
                                      "schema": {"$ref": "#/components/schemas/PlanRequest"}}}},
                                  "responses": {"200": _json({"type": "object"}), "409": _ERROR,
                                                "422": _ERROR, **errors, **too_large}}},
        },
    }


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
