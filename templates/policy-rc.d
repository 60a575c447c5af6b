#!/bin/sh
# Written by nspawnctl while it installs packages into a machine that is not running:
# services are not started until the machine boots. Removed when the install ends.
exit 101
