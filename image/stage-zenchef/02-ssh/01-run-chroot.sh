#!/bin/bash -e
systemctl enable ssh.service zenchef-ssh-keys.service
