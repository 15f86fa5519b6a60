"""Analytics: the Glue database and table (partition projection), the Athena workgroup
with its result location, and the shipped named queries."""

from __future__ import annotations

import re

from radstream.aws.athena_runner import positional_names, qualify, to_positional
from radstream.lake.glue import table_input
from radstream.lake.queries import NamedQuery, named_queries
from radstream.layout import ATHENA_RESULTS, TELEMETRY, Bucket

from .intrinsics import (
    BUCKETS,
    GLUE_DATABASE,
    KMS_KEY,
    TELEMETRY_TABLE,
    WORKGROUP,
    Json,
    get_att,
    ref,
    sub,
)
from .names import glue_database_name

NAMED_QUERIES_PARAMETER = "NamedQueries"
NAMED_QUERIES_CONDITION = "CreateNamedQueries"


def glue_database(stack: str) -> Json:
    """The telemetry lake's Glue database, named after the stack (two stacks side by side
    each have their own)."""
    return {
        "Type": "AWS::Glue::Database",
        "Properties": {
            "CatalogId": ref("AWS::AccountId"),
            "DatabaseInput": {
                "Name": glue_database_name(stack),
                "Description": f"RadStream telemetry lake of stack {stack}",
            },
        },
    }


def glue_table() -> Json:
    """``table_input`` with its location as ``Fn::Sub`` on the telemetry bucket."""
    marker = "radstream-telemetry-bucket-placeholder"
    spec = table_input(f"s3://{marker}/{TELEMETRY}")
    bucket = BUCKETS[Bucket.TELEMETRY]

    def resolve(value: object) -> object:
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, str) and marker in value:
            # ${dt}/${hour} are Athena projection variables: escape them from Fn::Sub.
            return sub(value.replace("${", "${!").replace(marker, "${" + bucket + "}"))
        return value

    return {
        "Type": "AWS::Glue::Table",
        "Properties": {
            "CatalogId": ref("AWS::AccountId"),
            "DatabaseName": ref(GLUE_DATABASE),
            "TableInput": resolve(spec),
        },
    }


def _query_description(query: NamedQuery) -> str:
    if not query.params:
        return query.description
    order = ", ".join(positional_names(query.sql))
    return f"{query.description} Parameters (each ?, in order): {order}."


def _named_query(query: NamedQuery, database: str) -> Json:
    return {
        "Type": "AWS::Athena::NamedQuery",
        "Condition": NAMED_QUERIES_CONDITION,
        "DependsOn": TELEMETRY_TABLE,
        "Properties": {
            "Name": query.name,
            "Description": _query_description(query)[:1024],
            "Database": ref(GLUE_DATABASE),
            "WorkGroup": ref(WORKGROUP),
            # Athena's own parameter syntax, so the saved query runs from the console,
            # which asks for each `?` in turn.
            "QueryString": qualify(to_positional(query.sql, query.bind({}))[0], database),
        },
    }


def athena_resources(stack: str, kms: bool) -> Json:
    """The workgroup (results under ``athena-results/`` of the results bucket, encrypted)
    and one named query per shipped query (under the ``CreateNamedQueries`` condition)."""
    encryption: Json = (
        {"EncryptionOption": "SSE_KMS", "KmsKey": get_att(KMS_KEY, "Arn")}
        if kms
        else {"EncryptionOption": "SSE_S3"}
    )
    results = BUCKETS[Bucket.RESULTS]
    resources: Json = {
        WORKGROUP: {
            "Type": "AWS::Athena::WorkGroup",
            "Properties": {
                "Name": f"{stack}-radstream",
                "Description": "RadStream telemetry queries",
                "RecursiveDeleteOption": True,
                "WorkGroupConfiguration": {
                    "EnforceWorkGroupConfiguration": True,
                    "PublishCloudWatchMetricsEnabled": True,
                    "ResultConfiguration": {
                        "OutputLocation": sub(f"s3://${{{results}}}/{ATHENA_RESULTS}"),
                        "EncryptionConfiguration": encryption,
                    },
                },
            },
        }
    }
    for query in named_queries().values():
        words = re.split(r"[^A-Za-z0-9]+", query.name)
        resources["Query" + "".join(p.capitalize() for p in words)] = _named_query(
            query, glue_database_name(stack)
        )
    return resources


def analytics_resources(stack: str, kms: bool) -> Json:
    """The Glue database and table, then Athena's workgroup and named queries."""
    return {
        GLUE_DATABASE: glue_database(stack),
        TELEMETRY_TABLE: glue_table(),
        **athena_resources(stack, kms),
    }
