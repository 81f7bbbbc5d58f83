"""The real services the team tests stand on start, answer and stay on 127.0.0.1."""

from __future__ import annotations

from tests import services


def test_postgres_gives_each_test_a_fresh_database(
    pg_cluster: services.PostgresCluster, pg_url: str
) -> None:
    assert pg_url.startswith(f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/t_")
    dbname = pg_url.rsplit("/", 1)[1]
    assert (
        pg_cluster.psql(
            "SELECT count(*) FROM pg_class WHERE relkind = 'r'"
            " AND relnamespace = 'public'::regnamespace",
            dbname,
        ).strip()
        == "0"
    )
    assert pg_cluster.psql("SHOW listen_addresses").strip() == "127.0.0.1"


def test_moto_serves_a_fresh_bucket(s3_server: services.MotoServer, s3_bucket: str) -> None:
    import boto3

    name = s3_bucket.removeprefix("s3://")
    s3 = boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1")
    s3.put_object(Bucket=name, Key="probe", Body=b"x")
    assert s3.get_object(Bucket=name, Key="probe")["Body"].read() == b"x"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]] == ["probe"]
