"""The settings the EC2 backend declares: Essentia's keys first, then additive ones.

Kept free of boto3 imports: ``ess --help`` and ``ess config show`` read these.
"""

from __future__ import annotations

from ess.models import SettingSpec
from ess.names import USERNAME, USERNAME_HELP

#: Essentia's default Name tag; also what ``instance_tag`` falls back to.
DEFAULT_INSTANCE_TAG = "Essentia Worker Node"

SETTINGS: tuple[SettingSpec, ...] = (
    # -- Essentia's keys, names and defaults unchanged ---------------------------------
    SettingSpec(
        "aws_credential",
        type="path",
        help="AWS access key CSV as the IAM console downloads it, relative to the config "
        "file's folder (`credential_file` also finds `credential_file.csv`). Omit it "
        "to use boto3's own chain: environment, profiles, SSO, instance role.",
    ),
    SettingSpec(
        "use_private_ip",
        type="bool",
        default=False,
        help="Connect to nodes by their private IP (master inside the same VPC) instead of their public IP.",
    ),
    SettingSpec(
        "instance_tag",
        default=DEFAULT_INSTANCE_TAG,
        help="Value of the Name tag on every node. Only a label: ess selects nodes by "
        "their ess:cluster tag, never by Name.",
    ),
    SettingSpec(
        "instance_type",
        default="m3.medium",
        flag="--type",
        commands=("create",),
        help="EC2 instance type of the nodes, e.g. t3.large.",
    ),
    SettingSpec(
        "instance_count",
        type="int",
        default=2,
        minimum=1,
        maximum=1000,
        flag="--number",
        commands=("create",),
        help="How many nodes `create` launches (1 to 1000), all in one RunInstances call.",
    ),
    SettingSpec(
        "key_name",
        required=True,
        help="EC2 key pair name. Commands that read the cluster need it too: only nodes "
        "launched with this key pair, or adopted with its private key, are the cluster's. "
        "Its private key is looked for as "
        "<key_name>.pem in the config file's folder, then in ~/.ssh/; a path to a "
        ".pem file also works (the key pair name is then the file's stem).",
    ),
    SettingSpec(
        "security_groups",
        type="list",
        default=[],
        help="Security groups of the nodes, by name or sg- id, comma-separated. Names are "
        "looked up in the subnet's VPC (or the default VPC). Empty: the VPC's default group.",
    ),
    SettingSpec(
        "username",
        default="ec2-user",
        pattern=USERNAME.pattern,
        pattern_help=USERNAME_HELP,
        help="User name ess logs in as over SSH (ec2-user on Amazon Linux, ubuntu on Ubuntu).",
    ),
    # -- additive keys ----------------------------------------------------------------
    SettingSpec(
        "region",
        flag="--region",
        commands=("*",),
        help="AWS region, e.g. us-east-1. Default: AWS_DEFAULT_REGION, AWS_REGION, or the profile's region.",
    ),
    SettingSpec(
        "profile",
        flag="--profile",
        commands=("*",),
        help="Named profile from ~/.aws/config to use (ignored when aws_credential is set).",
    ),
    SettingSpec(
        "image_id",
        help="AMI to launch. Default: the latest Amazon Linux 2023 for the instance type's "
        "architecture, read from the public SSM parameter.",
    ),
    SettingSpec(
        "subnet_id",
        help="Subnet to launch into (also picks the VPC security group names are looked up "
        "in). Default: the default VPC's subnet that EC2 chooses.",
    ),
    SettingSpec(
        "key_file",
        type="path",
        help="Private key file for SSH, if it is not <key_name>.pem in the config folder or "
        "~/.ssh/. Must not be readable by others (chmod 600).",
    ),
    SettingSpec(
        "wait_timeout",
        type="int",
        default=600,
        minimum=1,
        maximum=7200,
        commands=("*",),
        help="Seconds terminate, stop and start wait for every node to reach its new state.",
    ),
    SettingSpec(
        "api_max_attempts",
        type="int",
        default=8,
        minimum=1,
        maximum=20,
        commands=("*",),
        help="Attempts per AWS API call (throttling and 5xx errors are retried with backoff, boto3's standard mode).",
    ),
)
