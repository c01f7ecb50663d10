#!/bin/bash -e
systemctl enable ssh.service
