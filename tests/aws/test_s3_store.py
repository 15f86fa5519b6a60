"""The S3 object store adapter against the emulator's S3: the port's contract, and claims."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from radstream.aws.s3_store import S3ObjectStore
from radstream.aws.session import AwsTarget
from radstream.errors import StoreAccessDenied, StoreKeyInvalid, StoreObjectMissing


@pytest.fixture(scope="module")
def store(emulator: Any) -> S3ObjectStore:
    s3 = AwsTarget(endpoint_url=emulator.url).client("s3")
    s3.create_bucket(Bucket="store-test-images")
    return S3ObjectStore(s3, {"images": "store-test-images"})


def test_put_get_head_list_delete(store: S3ObjectStore) -> None:
    info = store.put("images", "incoming/s1/a.png", b"png-bytes")
    assert info.etag and info.size == 9
    assert store.get("images", "incoming/s1/a.png") == b"png-bytes"
    head = store.head("images", "incoming/s1/a.png")
    assert head is not None and head.etag == info.etag and head.size == 9
    assert store.size("images", "incoming/s1/a.png") == 9
    store.put("images", "incoming/s1/a.json", b"{}")
    store.put("images", "incoming/s10/b.json", b"{}")
    assert store.list("images", "incoming/s1/") == ["incoming/s1/a.json", "incoming/s1/a.png"]
    store.delete("images", "incoming/s1/a.png")
    store.delete("images", "incoming/s1/a.png")  # absent is fine
    assert store.head("images", "incoming/s1/a.png") is None
    with pytest.raises(StoreObjectMissing):
        store.get("images", "incoming/s1/a.png")


def test_unknown_buckets_and_unsafe_keys_are_refused(store: S3ObjectStore) -> None:
    with pytest.raises(StoreKeyInvalid):
        store.put("results", "x.json", b"")
    with pytest.raises(StoreKeyInvalid):
        store.put("images", "../escape", b"")


def test_listing_pages_past_a_thousand_keys(store: S3ObjectStore) -> None:
    keys = [f"many/{i:05d}" for i in range(1005)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: store.put("images", k, b"."), keys))
    assert store.list("images", "many/") == keys


def test_exactly_one_concurrent_claim_wins_and_all_learn_which(store: S3ObjectStore) -> None:
    owners = [f"execution-{i}".encode() for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        seen = list(pool.map(lambda o: store.put_if_absent("images", "claims/one", o), owners))
    winner = store.get("images", "claims/one")
    assert winner in owners
    assert seen == [winner] * len(owners)


def test_a_refused_request_is_a_typed_error(emulator: Any, store: S3ObjectStore) -> None:
    """The emulator enforces IAM: a role with no S3 permission at all is refused."""
    import json

    import botocore.session

    target = AwsTarget(endpoint_url=emulator.url)
    iam = target.client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
    role = iam.create_role(RoleName="no-s3", AssumeRolePolicyDocument=json.dumps(trust))
    creds = target.client("sts").assume_role(RoleArn=role["Role"]["Arn"], RoleSessionName="probe")[
        "Credentials"
    ]
    s3 = botocore.session.get_session().create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url=emulator.url,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    denied = S3ObjectStore(s3, {"images": "store-test-images"})
    with pytest.raises(StoreAccessDenied) as caught:
        denied.put("images", "incoming/s9/a.png", b"x")
    assert caught.value.code == "STORE_ACCESS_DENIED"
    with pytest.raises(StoreAccessDenied):
        denied.get("images", "incoming/s1/a.json")
