"""VPC across two AZs, endpoints, and least-privilege security groups between the services."""

from __future__ import annotations

from conftest import Synth
from helpers import logical_id, resources


def test_vpc_spans_two_azs_with_public_app_and_data_subnets(each: Synth) -> None:
    template = each.template("network")
    subnets = resources(template, "AWS::EC2::Subnet")
    assert len(subnets) == 6  # public, app (egress), data (isolated) x 2 AZs
    azs = {str(s["Properties"]["AvailabilityZone"]) for s in subnets.values()}
    assert len(azs) == 2
    nat = resources(template, "AWS::EC2::NatGateway")
    assert len(nat) == (2 if each.settings.is_prod else 1)
    template.resource_count_is("AWS::EC2::FlowLog", 1)


def _endpoints(template) -> dict[str, str]:
    found = resources(template, "AWS::EC2::VPCEndpoint").values()
    return {str(e["Properties"]["ServiceName"]): e["Properties"].get("VpcEndpointType", "Gateway") for e in found}


def test_interface_endpoints_are_off_by_default_the_free_s3_gateway_stays(each: Synth) -> None:
    """Issue 7 item 18: six interface endpoints in two AZs cost ~$88/month before traffic; off by default."""
    endpoints = _endpoints(each.template("network"))
    assert list(endpoints.values()) == ["Gateway"] and ".s3" in next(iter(endpoints))
    # Without endpoints, every app group reaches AWS APIs (ECR, SSM, Logs) through NAT on 443.
    for group in resources(each.template("network"), "AWS::EC2::SecurityGroup").values():
        description = group["Properties"]["GroupDescription"]
        if description.startswith(("Bridge", "Web tasks", "Webhook", "One-off")):
            egress = group["Properties"]["SecurityGroupEgress"]
            assert any(e.get("CidrIp") == "0.0.0.0/0" and e["FromPort"] == 443 for e in egress), description


def test_interface_endpoints_on_request_cover_ecr_secrets_ssm_logs_and_metrics() -> None:
    from aws_cdk.assertions import Template
    from voiceops_cdk.app import build

    template = Template.from_stack(build({"interface_endpoints": "true"}, nag=False).network)
    endpoints = _endpoints(template)
    names = " ".join(endpoints)
    for service in ("ecr.api", "ecr.dkr", "secretsmanager", "ssm", "logs", "monitoring", ".s3"):
        assert service in names, f"no VPC endpoint for {service}"
    assert sorted(endpoints.values()).count("Interface") == 6


def _ingress(template, target_prefix: str) -> list[tuple[str, int]]:
    target = logical_id(template, "AWS::EC2::SecurityGroup", target_prefix)
    rules = []
    for rule in resources(template, "AWS::EC2::SecurityGroupIngress").values():
        props = rule["Properties"]
        if props["GroupId"] == {"Fn::GetAtt": [target, "GroupId"]}:
            rules.append((props["SourceSecurityGroupId"]["Fn::GetAtt"][0], props["FromPort"]))
    return rules


def test_each_service_has_its_own_group_and_no_group_allows_all_egress(dev: Synth) -> None:
    template = dev.template("network")
    groups = resources(template, "AWS::EC2::SecurityGroup")
    for prefix in ("AlbSg", "BridgeSg", "WebSg", "WebhookSg", "DatabaseSg", "DbProxySg", "RedisSg", "EndpointsSg"):
        logical_id(template, "AWS::EC2::SecurityGroup", prefix)
    for name, group in groups.items():
        for egress in group["Properties"].get("SecurityGroupEgress", []):
            assert egress.get("IpProtocol") != "-1", f"{name} allows all outbound traffic"


def test_database_and_redis_accept_only_the_app_groups(dev: Synth) -> None:
    template = dev.template("network")
    db_sources = {(src.rstrip("0123456789ABCDEF"), port) for src, port in _ingress(template, "DatabaseSg")}
    assert db_sources == {("BridgeSg", 5432), ("WebSg", 5432), ("ReleaseSg", 5432), ("DbProxySg", 5432)}
    redis_sources = {(src.rstrip("0123456789ABCDEF"), port) for src, port in _ingress(template, "RedisSg")}
    assert redis_sources == {("BridgeSg", 6379), ("WebSg", 6379)}
    proxy_sources = {src.rstrip("0123456789ABCDEF") for src, _ in _ingress(template, "DbProxySg")}
    assert proxy_sources == {"WebhookSg"}
    bridge_sources = {(src.rstrip("0123456789ABCDEF"), port) for src, port in _ingress(template, "BridgeSg")}
    assert bridge_sources == {("AlbSg", 8000)}


def test_only_the_alb_is_open_to_the_internet_and_only_on_443(dev: Synth) -> None:
    groups = resources(dev.template("network"), "AWS::EC2::SecurityGroup")
    for name, group in groups.items():
        for ingress in group["Properties"].get("SecurityGroupIngress", []):
            if ingress.get("CidrIp") == "0.0.0.0/0" or ingress.get("CidrIpv6") == "::/0":
                assert name.startswith("AlbSg") and ingress["FromPort"] == 443, f"{name} is open to the internet"
