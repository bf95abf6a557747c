"""PostgreSQL + RDS Proxy, node-based Redis (cluster mode off), S3 + CloudFront with OAC."""

from __future__ import annotations

from conftest import Synth
from helpers import only, resources, text


def test_postgres_is_encrypted_backed_up_private_and_its_password_generated(each: Synth) -> None:
    template = each.template("data")
    db = only(template, "AWS::RDS::DBInstance")["Properties"]
    assert db["Engine"] == "postgres"
    assert db["StorageEncrypted"] is True
    assert db["BackupRetentionPeriod"] >= 3
    assert db.get("PubliclyAccessible", False) is False
    assert db["MultiAZ"] is each.settings.is_prod
    assert "resolve:secretsmanager" in text(db["MasterUserPassword"])
    subnet_group = only(template, "AWS::RDS::DBSubnetGroup")["Properties"]
    assert "Isolated" in text(subnet_group["SubnetIds"]) or "data" in text(subnet_group["SubnetIds"]).lower()


def test_rds_proxy_requires_tls(each: Synth) -> None:
    proxy = only(each.template("data"), "AWS::RDS::DBProxy")["Properties"]
    assert proxy["RequireTLS"] is True
    assert proxy["EngineFamily"] == "POSTGRESQL"


def test_redis_is_node_based_with_cluster_mode_disabled(each: Synth) -> None:
    template = each.template("data")
    assert not resources(template, "AWS::ElastiCache::ServerlessCache")  # CROSSSLOT with channels_redis
    redis = only(template, "AWS::ElastiCache::ReplicationGroup")["Properties"]
    assert redis["ClusterMode"] == "disabled" and redis["NumNodeGroups"] == 1
    assert redis["TransitEncryptionEnabled"] is True and redis["AtRestEncryptionEnabled"] is True
    assert redis["Engine"] == "redis"


def test_static_bucket_private_behind_cloudfront_oac(each: Synth) -> None:
    template = each.template("static")
    template.resource_count_is("AWS::CloudFront::OriginAccessControl", 1)
    distribution = only(template, "AWS::CloudFront::Distribution")["Properties"]["DistributionConfig"]
    origin = distribution["Origins"][0]
    assert origin["OriginAccessControlId"]
    assert distribution["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
    for bucket in resources(template, "AWS::S3::Bucket").values():
        block = bucket["Properties"]["PublicAccessBlockConfiguration"]
        assert all(
            block[k] for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
        )
    policies = text(resources(template, "AWS::S3::BucketPolicy"))
    assert "cloudfront.amazonaws.com" in policies and "aws:SecureTransport" in policies


def test_postgres_version_pin_agrees_with_auto_minor_upgrade(each: Synth) -> None:
    """Issue 7 item 13. With AutoMinorVersionUpgrade on, RDS moves the instance to newer minors on its own;
    a template that names a minor (17.9) then asks a later update to go back, which RDS refuses ("Cannot
    upgrade postgres from 17.10 to 17.9"). So: major only + auto minor upgrade, or a minor + auto off."""
    db = only(each.template("data"), "AWS::RDS::DBInstance")["Properties"]
    version = db["EngineVersion"]
    if db.get("AutoMinorVersionUpgrade", True):  # RDS's default is on
        assert "." not in version, f"auto minor upgrade is on, yet the template pins the minor {version}"
    else:
        assert version.count(".") == 1, f"auto minor upgrade is off: pin the minor, not {version}"
    params = only(each.template("data"), "AWS::RDS::DBParameterGroup")["Properties"]
    assert params["Family"] == f"postgres{version.split('.')[0]}"
