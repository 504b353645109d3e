"""
The C{kaazing-promo} command: the tools beside the twistd plugin.

  - C{kaazing-promo check-config FILE}: validate as start-up would, print
    the effective settings with secrets redacted, exit 0 or 1.
  - C{kaazing-promo hash-password}: read a password from standard input,
    print a C{passHash} value in the gateway's own format (U2).
  - C{kaazing-promo provision --apigw-dir DIR --instance DIR}: copy the API
    Gateway's users.cnf into C{DIR/config/users.cnf} (U5).
"""

import argparse
import sys

from kaazing_promo.errors import ConfigError


def checkConfig(path, apigwDir, out):
    """
    Validate C{path} with the same code start-up runs, without listening.

    @return: the exit code.
    """
    from twisted.internet import reactor

    from kaazing_promo.config import loadConfig
    from kaazing_promo.tap import GatewayService
    try:
        config = loadConfig(path, apigwDir)
        gateway = GatewayService(config, reactor)
    except ConfigError as e:
        print(f"kaazing-promo: {e}", file=sys.stderr)
        return 1
    print(f"{path}: OK", file=out)
    print(repr(config), file=out)
    print(f"broker secrets: {gateway.secrets!r}", file=out)
    checker = getattr(gateway.portal, "checker", None)
    if checker is not None and hasattr(checker, "userCount"):
        print(f"users.cnf: {checker.path}: {checker.userCount} users", file=out)
    return 0


def main(argv=None, stdin=None, stdout=None):
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    parser = argparse.ArgumentParser(prog="kaazing-promo", description=__doc__.split("\n\n")[0].strip())
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check-config", help="validate a configuration file and print it, secrets redacted")
    check.add_argument("file")
    check.add_argument("--apigw-dir", default=None)
    commands.add_parser("hash-password", help="read a password on standard input, print its passHash")
    provision = commands.add_parser("provision", help="copy the API Gateway's users.cnf into an instance")
    provision.add_argument("--apigw-dir", required=True)
    provision.add_argument("--instance", required=True)
    provision.add_argument("--force", action="store_true", help="replace a different existing users.cnf")
    options = parser.parse_args(argv)

    if options.command == "check-config":
        return checkConfig(options.file, options.apigw_dir, stdout)
    if options.command == "hash-password":
        from kaazing_promo.auth.internal import hashPasswordCommand
        return hashPasswordCommand(stdin, stdout)
    from kaazing_promo.auth.internal import provision as provisionUsers
    try:
        path = provisionUsers(options.apigw_dir, options.instance, force=options.force)
    except ConfigError as e:
        print(f"kaazing-promo: {e}", file=sys.stderr)
        return 1
    print(f"copied users.cnf to {path}", file=stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
