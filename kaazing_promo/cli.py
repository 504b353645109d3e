"""
The C{kaazing-promo} command: the tools beside the twistd plugin.

  - C{kaazing-promo check-config FILE}: validate as start-up would, print
    the effective settings with secrets redacted, exit 0 or 1.
  - C{kaazing-promo hash-password}: read a password from standard input,
    print a C{passHash} value in the gateway's own format (U2).
  - C{kaazing-promo provision --apigw-dir DIR --instance DIR}: copy the API
    Gateway's users.cnf into C{DIR/config/users.cnf} (U5).
  - C{kaazing-promo containerfile --config FILE --out DIR}: write a container
    build context (the createDockerFile analogue).
"""

import argparse
import sys

from kaazing_promo.errors import ConfigError


def checkConfig(path, apigwDir, out, err=None):
    """
    Validate C{path} with the same code start-up runs, without listening;
    print what was checked and the effective settings, secrets redacted.

    @return: the exit code: 0 when the gateway would start, else 1.
    """
    from kaazing_promo.ops.checkconfig import checkConfig as check
    return check(path, apigwDir, out, err or sys.stderr)


#: What C{kaazing-promo --help} says first (plain text: argparse prints it as it is).
DESCRIPTION = "The kaazing-promo command: the tools beside the twistd plugin (twistd -n kaazing-promo)."


def makeParser():
    """
    @return: the C{argparse} parser of the command and its subcommands.
    """
    parser = argparse.ArgumentParser(prog="kaazing-promo", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check-config", help="validate a configuration file as start-up would (without listening) "
                             "and print the effective settings, secrets redacted; exit 0 or 1",
        description="Validate a configuration file with the code start-up runs, without listening, "
                    "and print the effective settings with secrets redacted. Exit status 0: the "
                    "gateway would start; 1: it would not (the message says why).")
    check.add_argument("file", help="the TOML configuration file, e.g. /etc/kaazing-promo/gateway.toml")
    check.add_argument("--apigw-dir", default=None, metavar="DIR",
                       help="the API Gateway installation directory, as twistd's --apigw-dir (wins over "
                            "apigw_dir in the file)")
    commands.add_parser(
        "hash-password", help="read a password on standard input, print its passHash",
        description="Read one password on standard input (a trailing newline is dropped) and print a "
                    "passHash value in the gateway's own format, for users.cnf or the [internal] overlay.")
    provision = commands.add_parser(
        "provision", help="copy the API Gateway's users.cnf into an instance",
        description="Copy the API Gateway's users.cnf "
                    "(DIR/IntegrationServer/instances/default/config/users.cnf) into INSTANCE/config/users.cnf, "
                    "where the gateway looks first.")
    provision.add_argument("--apigw-dir", required=True, metavar="DIR",
                           help="the API Gateway installation directory to copy users.cnf from")
    provision.add_argument("--instance", required=True, metavar="INSTANCE",
                           help="the gateway's instance directory (where gateway.toml is); "
                                "users.cnf goes to INSTANCE/config/users.cnf")
    provision.add_argument("--force", action="store_true", help="replace a different existing users.cnf")
    from kaazing_promo import container
    container.addArguments(commands.add_parser(
        "containerfile", help="write a container build context (Containerfile, wheels, configuration, "
                              "users.cnf; no secret) that builds with no network",
        description="Write a container build context: a Containerfile (Dockerfile syntax; "
                    "podman build --format docker, or docker build), this package and its dependencies "
                    "as wheels, the configuration pointing inside the image, and users.cnf. Broker "
                    f"secrets are mounted at run time at {container.SECRETS_PATH}."))
    return parser


def main(argv=None, stdin=None, stdout=None):
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    parser = makeParser()
    options = parser.parse_args(argv)

    if options.command == "containerfile":
        from kaazing_promo import container
        return container.containerfileCommand(options, stdout, sys.stderr,
                                              sys.argv[1:] if argv is None else argv)
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
