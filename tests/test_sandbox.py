"""The X and Mastodon sandboxes, driven by the real tweepy and Mastodon.py clients.

These tests pin down both what the sandboxes do and what the client libraries raise for
each failure, which is what the channels are written against.
"""

from __future__ import annotations

import io
import re
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import replace

import mastodon
import pytest
import requests
import tweepy
from requests_oauthlib import OAuth1

from broadcaster.channels.transport import RebasingAdapter, configure_session
from broadcaster.sandbox import (
    DEFAULT_MASTODON_ACCOUNT,
    DEFAULT_X_ACCOUNT,
    Faults,
    MastodonSandbox,
    XAccount,
    XSandbox,
    run_sandboxes,
    status_length,
)

A = DEFAULT_X_ACCOUNT
CLIENT_TIMEOUT = 0.5
FakeClock = Callable[[], float]  # sandbox_fixtures.FakeClock, which also has .advance()
MakeTweepy = Callable[..., tweepy.Client]
MakeMastodon = Callable[..., mastodon.Mastodon]


@pytest.fixture(autouse=True)
def _offline(no_real_network: None) -> None:
    """Every test here runs with name resolution limited to loopback."""


def _oauth1(*, consumer_secret: str = A.consumer_secret) -> OAuth1:
    return OAuth1(
        A.consumer_key,
        client_secret=consumer_secret,
        resource_owner_key=A.access_token,
        resource_owner_secret=A.access_token_secret,
    )


# -- X: posting and reading -------------------------------------------------------------


def test_x_post_reply_chain_and_timeline(x_sandbox: XSandbox, tweepy_client: tweepy.Client):
    root = tweepy_client.create_tweet(text="Investigating elevated error rates")
    assert root.data["id"].isdigit()
    assert root.data["edit_history_tweet_ids"] == [root.data["id"]]
    parent = root.data["id"]
    for text in ("Cause identified", "Resolved"):
        parent = tweepy_client.create_tweet(text=text, in_reply_to_tweet_id=parent).data["id"]

    (chain,) = x_sandbox.threads().values()
    assert [p.text for p in chain] == [
        "Investigating elevated error rates",
        "Cause identified",
        "Resolved",
    ]
    assert chain[1].in_reply_to == chain[0].id and chain[2].in_reply_to == chain[1].id
    assert all(p.account == A.username for p in chain)

    plain = tweepy_client.get_users_tweets(A.user_id, user_auth=True)
    assert [t.text for t in plain.data] == [
        "Resolved",
        "Cause identified",
        "Investigating elevated error rates",
    ]
    assert plain.data[0].created_at is None  # only when asked for
    assert plain.meta["result_count"] == 3 and "next_token" not in plain.meta

    rich = tweepy_client.get_users_tweets(
        A.user_id, user_auth=True, tweet_fields=["created_at", "conversation_id"]
    )
    assert rich.data[0].created_at is not None
    assert {t.conversation_id for t in rich.data} == {int(root.data["id"])}


def test_x_timeline_pagination(x_sandbox: XSandbox, tweepy_client: tweepy.Client):
    for i in range(7):
        x_sandbox.add_post(f"update {i}")
    first = tweepy_client.get_users_tweets(A.user_id, user_auth=True, max_results=5)
    assert [t.text for t in first.data] == [f"update {i}" for i in (6, 5, 4, 3, 2)]
    assert first.meta["newest_id"] == str(first.data[0].id)
    second = tweepy_client.get_users_tweets(
        A.user_id, user_auth=True, max_results=5, pagination_token=first.meta["next_token"]
    )
    assert [t.text for t in second.data] == ["update 1", "update 0"]
    assert "next_token" not in second.meta
    with pytest.raises(tweepy.BadRequest):
        tweepy_client.get_users_tweets(A.user_id, user_auth=True, max_results=3)


def test_x_several_accounts_are_separate_users(x_sandbox: XSandbox, make_tweepy: MakeTweepy):
    other = x_sandbox.accounts[1]
    first = make_tweepy(x_sandbox)
    second = make_tweepy(x_sandbox, other)
    assert first.get_me().data.username == A.username
    assert second.get_me().data.username == other.username
    # Same text from two accounts is not a duplicate.
    first.create_tweet(text="Maintenance tonight")
    second.create_tweet(text="Maintenance tonight")
    assert sorted(p.account for p in x_sandbox.posts()) == sorted([A.username, other.username])


def test_x_oauth2_user_token_and_app_only_token(fake_clock: FakeClock):
    other = XAccount("k", "s", "2-t", "ts", "2", "other", bearer_token="oauth2-user-token")
    with XSandbox(accounts=[A, other], clock=fake_clock, app_bearer_tokens=["app-token"]) as x:
        user = tweepy.Client(bearer_token=other.bearer_token)
        configure_session(user.session, x.base_url, CLIENT_TIMEOUT)
        user.create_tweet(text="via OAuth 2.0", user_auth=False)
        assert x.posts()[0].account == other.username

        app = tweepy.Client(bearer_token="app-token")
        configure_session(app.session, x.base_url, CLIENT_TIMEOUT)
        assert app.get_users_tweets(other.user_id).data[0].text == "via OAuth 2.0"
        with pytest.raises(tweepy.Forbidden, match="Application-Only is forbidden"):
            app.create_tweet(text="nope", user_auth=False)


def test_x_delete(x_sandbox: XSandbox, tweepy_client: tweepy.Client):
    tweet_id = tweepy_client.create_tweet(text="posted by mistake").data["id"]
    assert tweepy_client.delete_tweet(tweet_id).data == {"deleted": True}
    assert x_sandbox.posts()[0].deleted
    assert tweepy_client.get_users_tweets(A.user_id, user_auth=True).data is None
    with pytest.raises(tweepy.NotFound):
        tweepy_client.delete_tweet(tweet_id)


# -- X: refusals ------------------------------------------------------------------------


def test_x_duplicate_is_forbidden(x_sandbox: XSandbox, tweepy_client: tweepy.Client):
    tweepy_client.create_tweet(text="All systems operational")
    with pytest.raises(tweepy.Forbidden) as info:
        tweepy_client.create_tweet(text="All systems operational")
    assert info.value.response.json() == {
        "detail": "You are not allowed to create a Tweet with duplicate content.",
        "type": "about:blank",
        "title": "Forbidden",
        "status": 403,
    }
    assert info.value.api_messages == [
        "You are not allowed to create a Tweet with duplicate content."
    ]
    assert len(x_sandbox.posts()) == 1


def test_x_bad_or_missing_signature_is_unauthorized(x_sandbox: XSandbox, make_tweepy: MakeTweepy):
    forged = replace(A, consumer_secret="wrong")
    with pytest.raises(tweepy.Unauthorized) as info:
        make_tweepy(x_sandbox, forged).create_tweet(text="hello")
    assert info.value.response.json() == {
        "title": "Unauthorized",
        "type": "about:blank",
        "status": 401,
        "detail": "Unauthorized",
    }
    anonymous = requests.post(f"{x_sandbox.base_url}/2/tweets", json={"text": "hi"}, timeout=2)
    assert anonymous.status_code == 401
    assert x_sandbox.posts() == []


def test_x_signature_for_sandbox_url_or_any_public_host(x_sandbox: XSandbox):
    # Signed for the sandbox itself (no rebasing at all).
    direct = requests.post(
        f"{x_sandbox.base_url}/2/tweets",
        json={"text": "direct"},
        auth=_oauth1(),
        timeout=2,
    )
    assert direct.status_code == 201
    # Signed for api.x.com and rebased, as a client configured for the new host would be.
    session = requests.Session()
    configure_session(session, x_sandbox.base_url, CLIENT_TIMEOUT)
    via_x = session.post(
        "https://api.x.com/2/tweets",
        json={"text": "via api.x.com"},
        auth=_oauth1(),
        timeout=2,
    )
    assert via_x.status_code == 201
    # Signed for a host the sandbox does not stand in for: refused.
    session.mount(
        "https://",
        RebasingAdapter(x_sandbox.base_url, timeout=1, rewrite_from=("https://evil.example",)),
    )
    elsewhere = session.post(
        "https://evil.example/2/tweets",
        json={"text": "elsewhere"},
        auth=_oauth1(),
        timeout=2,
    )
    assert elsewhere.status_code == 401


def test_x_replayed_nonce_is_unauthorized(x_sandbox: XSandbox):
    session = requests.Session()
    prepared = session.prepare_request(
        requests.Request(
            "POST",
            f"{x_sandbox.base_url}/2/tweets",
            json={"text": "once"},
            auth=_oauth1(),
        )
    )
    assert session.send(prepared, timeout=2).status_code == 201
    assert session.send(prepared, timeout=2).status_code == 401


def test_x_replies_refused(x_sandbox: XSandbox, tweepy_client: tweepy.Client):
    root = tweepy_client.create_tweet(text="Degraded performance").data["id"]
    x_sandbox.replies_refused = True
    with pytest.raises(tweepy.Forbidden) as info:
        tweepy_client.create_tweet(text="Update", in_reply_to_tweet_id=root)
    assert "Reply to this conversation is not allowed" in info.value.api_messages[0]
    tweepy_client.create_tweet(text="Update (standalone)")  # roots are still fine
    assert [p.text for p in x_sandbox.posts()] == ["Degraded performance", "Update (standalone)"]


def test_x_reply_to_unknown_tweet_is_bad_request(tweepy_client: tweepy.Client):
    with pytest.raises(tweepy.BadRequest) as info:
        tweepy_client.create_tweet(text="Update", in_reply_to_tweet_id="123")
    body = info.value.response.json()
    assert body["title"] == "Invalid Request"
    assert body["type"] == "https://api.twitter.com/2/problems/invalid-request"
    assert body["errors"][0]["parameters"] == {"reply.in_reply_to_tweet_id": ["123"]}


def test_x_weighted_length(x_sandbox: XSandbox, tweepy_client: tweepy.Client):
    tweepy_client.create_tweet(text="a" * 280)
    # A URL counts 23 whatever its length: 257 + 23 = 280.
    tweepy_client.create_tweet(text="b" * 256 + " https://example.com/" + "p" * 100)
    with pytest.raises(tweepy.Forbidden, match="too long"):
        tweepy_client.create_tweet(text="c" * 281)
    with pytest.raises(tweepy.Forbidden, match="too long"):
        tweepy_client.create_tweet(text="世" * 141)  # CJK weighs 2
    assert len(x_sandbox.posts()) == 2


def test_x_credits_exhausted_is_402(x_sandbox: XSandbox, tweepy_client: tweepy.Client):
    x_sandbox.credits_exhausted = True
    with pytest.raises(tweepy.HTTPException) as info:
        tweepy_client.create_tweet(text="hello")
    # tweepy has no class for 402: it is the base HTTPException, not a subclass.
    assert type(info.value) is tweepy.HTTPException
    assert info.value.response.status_code == 402
    assert info.value.response.json()["title"] == "CreditsDepleted"
    assert "does not have any credits" in info.value.api_messages[0]


# -- X: rate limits ---------------------------------------------------------------------


def test_x_rate_limit_headers_and_429(fake_clock: FakeClock, make_tweepy: MakeTweepy):
    with XSandbox(clock=fake_clock, post_limit=2, daily_post_limit=1000) as x:
        client = make_tweepy(x)
        client.return_type = requests.Response  # to see the headers of a success
        ok = client.create_tweet(text="one")
        assert ok.headers["x-rate-limit-limit"] == "2"
        assert ok.headers["x-rate-limit-remaining"] == "1"
        assert int(ok.headers["x-rate-limit-reset"]) == int(fake_clock()) + 900
        assert ok.headers["x-user-limit-24hour-limit"] == "1000"
        assert ok.headers["x-user-limit-24hour-remaining"] == "999"
        client.create_tweet(text="two")
        with pytest.raises(tweepy.TooManyRequests) as info:
            client.create_tweet(text="three")
        headers = info.value.response.headers
        assert headers["x-rate-limit-remaining"] == "0"
        assert info.value.reset_time == int(headers["x-rate-limit-reset"])
        assert info.value.response.json() == {
            "title": "Too Many Requests",
            "detail": "Too Many Requests",
            "type": "about:blank",
            "status": 429,
        }
        assert client.get_me().headers["x-rate-limit-remaining"] == "74"  # per endpoint
        fake_clock.advance(901)
        client.create_tweet(text="three")
        assert len(x.posts()) == 3


def test_x_24_hour_user_limit(fake_clock: FakeClock, make_tweepy: MakeTweepy):
    with XSandbox(clock=fake_clock, daily_post_limit=2) as x:
        client = make_tweepy(x)
        client.create_tweet(text="one")
        client.create_tweet(text="two")
        fake_clock.advance(901)  # a fresh 15-minute window does not help
        with pytest.raises(tweepy.TooManyRequests) as info:
            client.create_tweet(text="three")
        headers = info.value.response.headers
        assert headers["x-user-limit-24hour-remaining"] == "0"
        assert headers["x-rate-limit-remaining"] != "0"
        fake_clock.advance(24 * 3600)
        client.create_tweet(text="three")


# -- X: faults --------------------------------------------------------------------------


def test_x_accept_then_drop(x_sandbox: XSandbox, tweepy_client: tweepy.Client):
    x_sandbox.faults.drop_next(1)
    # tweepy does not wrap transport errors: the raw requests exception escapes.
    with pytest.raises(requests.exceptions.ConnectionError):
        tweepy_client.create_tweet(text="Outage resolved")
    (post,) = x_sandbox.posts()
    assert post.text == "Outage resolved"
    record = x_sandbox.requests_log()[-1]
    assert (record.status, record.fault, record.handled_status) == (None, "drop", 201)
    # A blind retry is refused as a duplicate: the channel must look before re-sending.
    with pytest.raises(tweepy.Forbidden, match="duplicate"):
        tweepy_client.create_tweet(text="Outage resolved")


def test_x_hang_times_out(x_sandbox: XSandbox, tweepy_client: tweepy.Client):
    x_sandbox.faults.hang_next(1, seconds=1.0)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        tweepy_client.create_tweet(text="slow")  # no timeout passed: the adapter's applies
    assert time.monotonic() - started < 1.0
    assert x_sandbox.posts() == []
    # A hang after processing: timed out, and yet posted.
    x_sandbox.faults.hang_next(1, seconds=1.0, after_processing=True)
    with pytest.raises(requests.exceptions.ReadTimeout):
        tweepy_client.create_tweet(text="slow but done")
    assert [p.text for p in x_sandbox.posts()] == ["slow but done"]


def test_x_latency_below_timeout_succeeds(x_sandbox: XSandbox, tweepy_client: tweepy.Client):
    x_sandbox.faults.configure(latency=0.2)
    started = time.monotonic()
    tweepy_client.create_tweet(text="eventually")
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    tweepy_client.get_me()  # reads are out of the default fault scope
    assert time.monotonic() - started < 0.2


@pytest.mark.parametrize("status", [500, 502, 503])
def test_x_server_errors(x_sandbox: XSandbox, tweepy_client: tweepy.Client, status: int):
    x_sandbox.faults.fail_next(1, status=status)
    with pytest.raises(tweepy.TwitterServerError) as info:
        tweepy_client.create_tweet(text="hello")
    assert info.value.response.status_code == status
    assert info.value.response.json()["status"] == status
    assert x_sandbox.posts() == []
    tweepy_client.create_tweet(text="hello")  # the next one goes through


def test_x_429_burst(x_sandbox: XSandbox, tweepy_client: tweepy.Client):
    x_sandbox.faults.rate_limit_next(2)
    for _ in range(2):
        with pytest.raises(tweepy.TooManyRequests) as info:
            tweepy_client.create_tweet(text="hello")
        assert info.value.response.headers["x-rate-limit-remaining"] == "0"
        assert info.value.reset_time is not None
    tweepy_client.create_tweet(text="hello")


def test_fault_scope_all(x_sandbox: XSandbox, tweepy_client: tweepy.Client):
    x_sandbox.faults.fail_next(1, status=503)
    tweepy_client.get_me()  # out of scope: the fault waits for a post
    x_sandbox.faults.configure(scope="all")
    with pytest.raises(tweepy.TwitterServerError):
        tweepy_client.get_me()


def test_seeded_error_rate_is_deterministic():
    def outcomes(seed: int) -> list[int | None]:
        faults = Faults(seed=seed)
        faults.configure(error_rate=0.5)
        return [faults.decide(posting=True).status for _ in range(40)]

    first = outcomes(7)
    assert first == outcomes(7)
    assert {s for s in first if s} <= {500, 502, 503}
    assert 5 < sum(1 for s in first if s) < 35


def test_requests_log_shows_idleness(x_sandbox: XSandbox, tweepy_client: tweepy.Client):
    assert x_sandbox.requests_log() == []
    tweepy_client.create_tweet(text="one")
    (record,) = x_sandbox.requests_log()
    assert (record.method, record.path, record.status) == ("POST", "/2/tweets", 201)


def test_page_escapes_post_text(x_sandbox: XSandbox, tweepy_client: tweepy.Client):
    root = tweepy_client.create_tweet(text="<script>alert(1)</script> & co").data["id"]
    tweepy_client.create_tweet(text="then-the-reply", in_reply_to_tweet_id=root)
    page = requests.get(x_sandbox.base_url + "/", timeout=2)
    assert page.headers["Content-Type"].startswith("text/html")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page.text
    assert "<script>" not in page.text
    assert page.text.index("alert(1)") < page.text.index("then-the-reply")


# -- Mastodon -----------------------------------------------------------------------------


def test_mastodon_post_and_reply_chain(
    mastodon_sandbox: MastodonSandbox, mastodon_client: mastodon.Mastodon
):
    root = mastodon_client.status_post("Investigating <errors> & timeouts", language="en")
    reply = mastodon_client.status_post("Resolved", in_reply_to_id=root, visibility="unlisted")
    assert root.content == "<p>Investigating &lt;errors&gt; &amp; timeouts</p>"
    assert root.account.username == DEFAULT_MASTODON_ACCOUNT.username
    assert root.created_at.tzinfo is not None
    assert root.language == "en" and reply.visibility == "unlisted"
    assert str(reply.in_reply_to_id) == str(root.id)
    (chain,) = mastodon_sandbox.threads().values()
    assert [p.id for p in chain] == [str(root.id), str(reply.id)]
    assert mastodon_client.status(root.id).replies_count == 1


def test_mastodon_idempotency_key(
    mastodon_sandbox: MastodonSandbox,
    mastodon_client: mastodon.Mastodon,
    fake_clock: FakeClock,
    make_mastodon: MakeMastodon,
):
    first = mastodon_client.status_post("Update 1", idempotency_key="part-1")
    again = mastodon_client.status_post("Update 1", idempotency_key="part-1")
    assert again.id == first.id
    assert len(mastodon_sandbox.posts()) == 1
    assert mastodon_sandbox.posts()[0].idempotency_key == "part-1"
    # Keys are per account.
    other = make_mastodon(mastodon_sandbox, mastodon_sandbox.accounts[1])
    assert other.status_post("Update 1", idempotency_key="part-1").id != first.id
    # And remembered for an hour only.
    fake_clock.advance(3601)
    assert mastodon_client.status_post("Update 1", idempotency_key="part-1").id != first.id
    assert len(mastodon_sandbox.posts()) == 3


def test_mastodon_length_limit(
    mastodon_sandbox: MastodonSandbox, mastodon_client: mastodon.Mastodon
):
    mastodon_client.status_post("a" * 500)
    with pytest.raises(mastodon.MastodonAPIError) as info:
        mastodon_client.status_post("a" * 501)
    assert info.value.args[1] == 422
    assert info.value.args[3] == "Validation failed: Text character limit of 500 exceeded"
    with pytest.raises(mastodon.MastodonAPIError):
        mastodon_client.status_post("a" * 400, spoiler_text="b" * 101)
    # 476 + 1 + 23 for any URL = 500.
    mastodon_client.status_post("c" * 476 + " https://example.com/" + "p" * 200)
    assert len(mastodon_sandbox.posts()) == 2


def test_mastodon_counting_rules():
    assert status_length("family 👨‍👩‍👧‍👦") == 8
    assert status_length("see https://example.com/a/very/long/path") == 4 + 23
    assert status_length("cc @ops@status.example.org") == len("cc @ops")
    assert status_length("text", "cw") == 6


def test_mastodon_reply_to_unknown_is_404(mastodon_client: mastodon.Mastodon):
    with pytest.raises(mastodon.MastodonNotFoundError) as info:
        mastodon_client.status_post("Update", in_reply_to_id="42")
    assert info.value.args[3] == "Record not found"


def test_mastodon_bad_token(mastodon_sandbox: MastodonSandbox, make_mastodon: MakeMastodon):
    client = make_mastodon(mastodon_sandbox, access_token="stolen")
    with pytest.raises(mastodon.MastodonUnauthorizedError) as info:
        client.account_verify_credentials()
    assert info.value.args[3] == "The access token is invalid"
    with pytest.raises(mastodon.MastodonUnauthorizedError):
        client.status_post("hello")
    assert mastodon_sandbox.posts() == []


def test_mastodon_instance_and_credentials(
    mastodon_sandbox: MastodonSandbox, mastodon_client: mastodon.Mastodon
):
    assert mastodon_client.account_verify_credentials().username == "status"
    v1 = mastodon_client.instance_v1()
    v2 = mastodon_client.instance_v2()
    assert v1.configuration.statuses.max_characters == 500
    assert v2.configuration.statuses.characters_reserved_per_url == 23
    assert v2.domain == v1.uri == mastodon_sandbox.domain
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "no API version found" for a 4.3 server
        assert mastodon_client.retrieve_mastodon_version() == "4.3.0"


def test_mastodon_account_statuses_pagination(
    mastodon_sandbox: MastodonSandbox, mastodon_client: mastodon.Mastodon
):
    for i in range(5):
        mastodon_sandbox.add_post(f"update {i}")
    account_id = DEFAULT_MASTODON_ACCOUNT.id
    page = mastodon_client.account_statuses(account_id, limit=3)
    assert [s.content for s in page] == [f"<p>update {i}</p>" for i in (4, 3, 2)]
    rest = mastodon_client.fetch_next(page)
    assert [s.content for s in rest] == ["<p>update 1</p>", "<p>update 0</p>"]


def test_mastodon_rate_limit_headers_and_reset(
    mastodon_sandbox: MastodonSandbox, mastodon_client: mastodon.Mastodon, fake_clock: FakeClock
):
    response = requests.get(f"{mastodon_sandbox.base_url}/api/v1/instance", timeout=2)
    assert response.headers["X-RateLimit-Limit"] == "300"
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", response.headers["X-RateLimit-Reset"]
    )
    mastodon_client.account_verify_credentials()
    # Mastodon.py parsed the ISO reset and moved it onto the local clock via Date.
    window_end = (fake_clock() // 300 + 1) * 300
    expected = time.time() + (window_end - fake_clock())
    assert mastodon_client.ratelimit_reset == pytest.approx(expected, abs=2)
    assert mastodon_client.ratelimit_remaining == 299
    posted = mastodon_client.status_post("hello")
    assert posted.id  # the statuses budget is what POST /api/v1/statuses reports
    assert mastodon_client.ratelimit_limit == 300 and mastodon_client.ratelimit_remaining == 299


def test_mastodon_429(fake_clock: FakeClock, make_mastodon: MakeMastodon):
    with MastodonSandbox(clock=fake_clock, request_limit=3, status_limit=1) as server:
        client = make_mastodon(server)
        client.status_post("one")
        with pytest.raises(mastodon.MastodonRatelimitError):
            client.status_post("two")  # statuses budget spent
        client.account_verify_credentials()  # the request budget had room
        with pytest.raises(mastodon.MastodonRatelimitError):
            client.account_verify_credentials()
        assert client.ratelimit_remaining == 0
        response = requests.get(
            f"{server.base_url}/api/v1/accounts/verify_credentials",
            headers={"Authorization": f"Bearer {DEFAULT_MASTODON_ACCOUNT.access_token}"},
            timeout=2,
        )
        assert response.status_code == 429
        assert response.json() == {"error": "Too many requests"}
        assert "Retry-After" not in response.headers
        fake_clock.advance(3 * 3600)
        client.status_post("two")


def test_mastodon_accept_then_drop_and_idempotent_retry(
    mastodon_sandbox: MastodonSandbox, mastodon_client: mastodon.Mastodon
):
    mastodon_sandbox.faults.drop_next(1)
    with pytest.raises(mastodon.MastodonNetworkError):
        mastodon_client.status_post("Resolved", idempotency_key="k")
    (post,) = mastodon_sandbox.posts()
    retried = mastodon_client.status_post("Resolved", idempotency_key="k")
    assert str(retried.id) == post.id
    assert len(mastodon_sandbox.posts()) == 1


def test_mastodon_timeout(mastodon_sandbox: MastodonSandbox, mastodon_client: mastodon.Mastodon):
    mastodon_sandbox.faults.hang_next(1, seconds=1.0)
    with pytest.raises(mastodon.MastodonNetworkError, match="timed out"):
        mastodon_client.status_post("slow")
    assert mastodon_sandbox.posts() == []


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, mastodon.MastodonInternalServerError),
        (502, mastodon.MastodonBadGatewayError),
        (503, mastodon.MastodonServiceUnavailableError),
    ],
)
def test_mastodon_server_errors(
    mastodon_sandbox: MastodonSandbox,
    mastodon_client: mastodon.Mastodon,
    status: int,
    error: type[Exception],
):
    mastodon_sandbox.faults.fail_next(1, status=status)
    with pytest.raises(error) as info:
        mastodon_client.status_post("hello")
    assert isinstance(info.value, mastodon.MastodonServerError)
    assert info.value.args[1] == status
    assert mastodon_sandbox.posts() == []


def test_mastodon_429_burst(mastodon_sandbox: MastodonSandbox, mastodon_client: mastodon.Mastodon):
    mastodon_sandbox.faults.rate_limit_next(1)
    with pytest.raises(mastodon.MastodonRatelimitError):
        mastodon_client.status_post("hello")
    assert mastodon_client.ratelimit_remaining == 0
    mastodon_client.status_post("hello")


# -- plumbing ---------------------------------------------------------------------------


def test_rebasing_adapter_rewrites_only_known_prefixes():
    adapter = RebasingAdapter("http://127.0.0.1:9", timeout=1)
    assert (
        adapter.rebase("https://api.twitter.com/2/tweets?a=1") == "http://127.0.0.1:9/2/tweets?a=1"
    )
    assert adapter.rebase("https://api.x.com/2/users/me") == "http://127.0.0.1:9/2/users/me"
    assert adapter.rebase("https://api.x.com.evil.example/2") == "https://api.x.com.evil.example/2"
    assert adapter.rebase("https://mastodon.example/api") == "https://mastodon.example/api"


def test_real_hosts_are_unreachable_from_these_tests():
    with pytest.raises(requests.exceptions.ConnectionError, match="only loopback"):
        requests.get("https://api.twitter.com/2/users/me", timeout=1)


def test_mastodon_accepts_json_bodies(mastodon_sandbox: MastodonSandbox):
    response = requests.post(
        f"{mastodon_sandbox.base_url}/api/v1/statuses",
        json={"status": "via JSON", "visibility": "unlisted", "language": "de"},
        headers={"Authorization": f"Bearer {DEFAULT_MASTODON_ACCOUNT.access_token}"},
        timeout=2,
    )
    assert response.status_code == 200
    assert response.json()["visibility"] == "unlisted"
    assert mastodon_sandbox.posts()[0].language == "de"


def test_stop_is_prompt_with_a_hanging_request(fake_clock: FakeClock, make_tweepy: MakeTweepy):
    server = XSandbox(clock=fake_clock).start()
    server.faults.hang_next(1, seconds=30)
    client = make_tweepy(server, timeout=0.2)
    with pytest.raises(requests.exceptions.ReadTimeout):
        client.create_tweet(text="hang")
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2


def test_concurrent_posts_are_all_recorded(fake_clock: FakeClock, make_tweepy: MakeTweepy):
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        client = make_tweepy(x)  # one client per thread, as one session per channel
        try:
            for i in range(5):
                client.create_tweet(text=f"worker {n} post {i}")
        except BaseException as exc:  # surfaced below; a thread would swallow it
            errors.append(exc)

    with XSandbox(clock=fake_clock, daily_post_limit=1000) as x:
        workers = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(30)  # generous: 2 shared cores under a full suite
        assert errors == []
        posts = x.posts()
        assert len({p.id for p in posts}) == len(posts) == 40
        assert [p.id for p in posts] == sorted((p.id for p in posts), key=int)


def test_wait_for_sees_posts_from_other_threads(x_sandbox: XSandbox, make_tweepy: MakeTweepy):
    client = make_tweepy(x_sandbox)
    worker = threading.Thread(target=lambda: client.create_tweet(text="from a thread"))
    worker.start()
    assert x_sandbox.wait_for(lambda: len(x_sandbox.posts()) == 1, timeout=5)
    worker.join()


def test_run_sandboxes_prints_urls_and_credentials():
    ready = threading.Event()

    class Out(io.StringIO):
        def write(self, text: str) -> int:
            written = super().write(text)
            if "Ctrl-C" in self.getvalue():
                ready.set()
            return written

    out, stop = Out(), threading.Event()
    runner = threading.Thread(target=run_sandboxes, kwargs={"out": out, "stop": stop})
    runner.start()
    try:
        assert ready.wait(5)
        text = out.getvalue()
        assert A.consumer_key in text and DEFAULT_MASTODON_ACCOUNT.access_token in text
        for url in re.findall(r"sandbox:\s+(http://127\.0\.0\.1:\d+)", text):
            assert requests.get(url + "/", timeout=2).status_code == 200
    finally:
        stop.set()
        runner.join(5)
    assert not runner.is_alive()
