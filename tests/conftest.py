"""Fixtures for every test module.

The X / Mastodon sandbox fixtures (``x_sandbox``, ``mastodon_sandbox``, ``no_real_network``,
``make_tweepy``...) live in ``sandbox_fixtures.py`` and are loaded here once, so any test
module can ask for them. Plain builders and helpers are in ``support.py``.
"""

pytest_plugins = ["sandbox_fixtures", "pg_server"]
