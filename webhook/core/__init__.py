"""The decision core: image reference -> decision -> JSON patch -> AdmissionReview answer. Pure.

``reference`` (the distribution grammar), ``registries`` (facts as data), ``reasons`` (stable codes), ``config``
(the frozen model), ``rules`` (the one decision function), ``patch`` (pod -> patch), ``admission`` (review ->
response), ``review_cache`` (answers per pod template) and ``workloads`` (pod specs inside any object).

May import: the standard library, pydantic, orjson and :mod:`webhook.exceptions`. Must not import any other part
of this package, a framework (FastAPI, uvicorn), a cluster or cloud client (kubernetes, boto3, httpx), or do I/O
(sockets, TLS, files, clocks): ``.importlinter`` enforces it for every module here, present and future.
"""
