"""HTTP for broadcaster, on Starlette and uvicorn: the daemon's intake, /healthz and /metrics
(``intake``), the drafting console (``console/``), and what every HTTP door shares
(``server``: running an app with a whole-request deadline; ``security``: headers)."""
