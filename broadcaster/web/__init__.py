"""The daemon's HTTP side on Starlette + uvicorn: the intake, /healthz and /metrics
(``intake``), served by one small uvicorn runner (``server``)."""
