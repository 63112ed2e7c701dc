#!/usr/bin/env python3
"""The PyPI oras client against a registry with access control (auth.sh).

  push HOST REPO USER PASSWORD WORKDIR   log in, push an artifact (tag v1), then pull it back
                                         anonymously and compare bytes; exit 0 on success
  push-anonymous HOST REPO WORKDIR       push without credentials; exit 0 only if refused

The last line of stdout says what happened.
"""

import os
import sys

import oras.provider


def artifact(workdir):
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)  # oras-py requires pushed files under the working directory
    with open("note.txt", "w") as f:
        f.write("berth access-control e2e\n" * 100)
    return ["note.txt:text/plain"]


def push(host, repo, user, password, workdir):
    files = artifact(workdir)
    reg = oras.provider.Registry(hostname=host, insecure=True)
    reg.login(username=user, password=password, tls_verify=False)
    r = reg.push(target="%s/%s:v1" % (host, repo), files=files, disable_path_validation=True, quiet=True)
    if r.status_code != 201:
        print("manifest PUT answered %s" % r.status_code)
        return 1
    anon = oras.provider.Registry(hostname=host, insecure=True)
    pulled = anon.pull(target="%s/%s:v1" % (host, repo), outdir=os.path.join(workdir, "pulled"))
    same = len(pulled) == 1 and open(pulled[0], "rb").read() == open("note.txt", "rb").read()
    print("pushed as %s, pulled back anonymously: %s" % (user, "identical" if same else "DIFFERENT"))
    return 0 if same else 1


def push_anonymous(host, repo, workdir):
    files = artifact(workdir)
    reg = oras.provider.Registry(hostname=host, insecure=True)
    try:
        r = reg.push(target="%s/%s:anon" % (host, repo), files=files, disable_path_validation=True, quiet=True)
    except Exception as e:  # oras-py raises on a refused upload
        print("refused: %s" % str(e).splitlines()[0][:200] if str(e) else type(e).__name__)
        return 0
    if r.status_code in (401, 403):
        print("refused: %s" % r.status_code)
        return 0
    print("anonymous push answered %s" % r.status_code)
    return 1


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    sys.exit(push(*args) if cmd == "push" else push_anonymous(*args))
