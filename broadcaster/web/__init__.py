"""HTTP for broadcaster, on Starlette and uvicorn: the drafting console (``console/``) and
the generic pieces every HTTP door shares (``server``: running an app; ``security``: headers)."""
