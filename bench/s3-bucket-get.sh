#!/usr/bin/env bash
# The bucket's own small-object GET rate on this machine, with nothing else running: the most a
# registry that must read one object per manifest GET could serve from this SeaweedFS. wrk on a
# presigned URL of a 2 kB object, 32 connections, 10 s, three times. Needs what tests/setup.sh
# installs (SeaweedFS, wrk) and boto3 (to presign).
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/seaweed.sh
D=$(mktemp -d)
seaweed_start "$D" KEY SECRET
trap 'kill -TERM $WEED_PID; wait $WEED_PID 2>/dev/null; rm -rf "$D"' EXIT
seaweed_bucket b
head -c 2048 /dev/urandom > "$D/obj"
curl -s -f --aws-sigv4 "aws:amz:us-east-1:s3" --user KEY:SECRET -T "$D/obj" "$S3/b/obj"
URL=$(env -u AWS_CA_BUNDLE python3 -c "
import boto3,botocore.config as c
s=boto3.client('s3',endpoint_url='$S3',aws_access_key_id='KEY',aws_secret_access_key='SECRET',region_name='us-east-1',config=c.Config(s3={'addressing_style':'path'},signature_version='s3v4'))
print(s.generate_presigned_url('get_object',Params={'Bucket':'b','Key':'obj'},ExpiresIn=3600))")
curl -s -f -o /dev/null "$URL" && echo "presigned GET ok"
for i in 1 2 3; do wrk -t2 -c32 -d10s "$URL" | grep -E "Requests/sec|Latency|Non-2xx"; done
