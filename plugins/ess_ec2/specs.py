"""The settings the EC2 backend declares: Essentia's keys first, then additive ones.

Kept free of boto3 imports: ``ess --help`` and ``ess config show`` read these.
"""

from __future__ import annotations

from ess.models import SettingSpec
from ess.names import USERNAME, USERNAME_HELP

#: Essentia's default Name tag; also what ``instance_tag`` falls back to.
DEFAULT_INSTANCE_TAG = "Essentia Worker Node"
#: EBS volume types a root volume can have (setting ``volume_type``).
#: (st1 and sc1 are left out: EC2 cannot boot from them.)
VOLUME_TYPES = ("gp3", "gp2", "io1", "io2", "standard")
#: Markets a cluster can launch in (setting ``market``); preflight.ON_DEMAND etc. name them.
MARKETS = ("on-demand", "spot", "spot-or-on-demand")

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
        help="EC2 instance type of the nodes, e.g. t3.large; or an ordered, comma-separated "
        "list to fall back on when the first has no capacity (`m5.large, m5a.large, m4.large`: "
        "one CreateFleet call tries them in this order). Every type must be offered in a "
        "listed subnet's zone and share one architecture.",
    ),
    SettingSpec(
        "instance_count",
        type="int",
        default=2,
        minimum=1,
        maximum=1000,
        flag="--number",
        commands=("create",),
        help="How many nodes `create` launches (1 to 1000), all in one call: RunInstances, "
        "or CreateFleet when instance_type or subnet_id lists several or market is not on-demand.",
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
        "in); or an ordered, comma-separated list of subnets of one VPC, usually one per "
        "availability zone (`subnet-a, subnet-b`), to fall back across zones in one "
        "CreateFleet call. Default: the default VPC's subnet that EC2 chooses.",
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
    # -- launch settings (issue 15) ---------------------------------------------------------
    SettingSpec(
        "iam_instance_profile",
        flag="--instance-profile",
        help="IAM instance profile (name or ARN) the nodes run with, so they reach S3 and "
        "other AWS services without keys copied onto them. Checked before launch "
        "(iam:GetInstanceProfile); launching with it needs iam:PassRole on its role "
        "(docs/ec2.md has the policy).",
    ),
    SettingSpec(
        "user_data",
        flag="--user-data",
        help="A script (#!...) or cloud-config file every node runs at first boot; relative "
        "paths start in the config file's folder (from --user-data or ESS_USER_DATA: the "
        "current folder). A one-line value starting with # is the user data itself, e.g. "
        "`#include https://example.com/boot.sh`. At most 16 KB after base64 encoding; "
        "ess adds its own parts (time limits) as a MIME multipart, never replacing yours.",
    ),
    SettingSpec(
        "root_volume_gb",
        type="int",
        minimum=1,
        maximum=65536,
        flag="--root-volume-gb",
        help="Size of each node's root volume in GiB. Default: the image's own size; a size "
        "below the image's snapshot is refused before launch.",
    ),
    SettingSpec(
        "volume_type",
        default="gp3",
        choices=VOLUME_TYPES,
        help="EBS type of each node's root volume: gp3 (default, used when root_volume_gb is "
        "set), gp2, io1, io2 (given 3,000 IOPS, or fewer where the size allows less) or "
        "standard. Set alone, it changes the type and keeps the image's size.",
    ),
    SettingSpec(
        "tags",
        type="list",
        default=[],
        flag="--tags",
        help="Extra tags on every node and its volumes, comma-separated key=value pairs "
        "(`team=data, cost-center=42`). Keys starting with ess: or aws: are reserved, and "
        "the Name tag is instance_tag.",
    ),
    SettingSpec(
        "market",
        default="on-demand",
        choices=MARKETS,
        flag="--market",
        help="on-demand (default), spot (every node spot), or spot-or-on-demand (spot where "
        "there is capacity, on-demand for the rest of the count). Spot nodes are terminated, "
        "not stopped, when AWS takes them back.",
    ),
    SettingSpec(
        "max_price",
        pattern=r"(?:\d+(?:\.\d*)?|\.\d+)",
        pattern_help="write a price in US dollars per hour, such as 0.05",
        flag="--max-price",
        help="Highest price per node-hour you pay for spot, in US dollars (e.g. 0.05). "
        "Default: the on-demand price. Only with market spot or spot-or-on-demand.",
    ),
)
