"""Reads the metadata service with cloud-init's own OpenStack reader (which
reads the EC2 tree too) and converts network_data.json as cloud-init does;
prints what it found as JSON."""
import json
import subprocess
import sys

from cloudinit.sources.helpers import openstack

found = openstack.MetadataReader("http://169.254.169.254", retries=0).read_v2()
links = json.loads(subprocess.check_output(["ip", "-j", "link", "show"]))
macs = {link["address"]: link["ifname"] for link in links if link.get("address")}
userdata = found["userdata"]
json.dump(
    {
        "metadata": found["metadata"],
        "userdata": userdata.decode() if isinstance(userdata, bytes) else userdata,
        "ec2": found["ec2-metadata"],
        "network": openstack.convert_net_json(found.get("networkdata"), known_macs=macs),
    },
    sys.stdout,
    default=str,
)
