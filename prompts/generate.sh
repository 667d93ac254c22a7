#!/usr/bin/env bash
# Regenerates the IVR prompts: speech from espeak-ng (Debian espeak-ng),
# converted by ffmpeg to raw G.711 mu-law, 8 kHz mono (the .ul files, which
# the daemon embeds). Run once by hand when a sentence changes; the output
# is committed, so neither tool is needed to build or run sluice.
set -euo pipefail
cd "$(dirname "$0")"
say() {
    local name=$1 text=$2
    espeak-ng -v en-us -s 150 -w "/tmp/sluice-prompt-$name.wav" "$text"
    ffmpeg -loglevel error -y -i "/tmp/sluice-prompt-$name.wav" \
        -af "highpass=f=200,lowpass=f=3400,volume=-3dB" -ar 8000 -ac 1 -f mulaw "$name.ul"
    rm -f "/tmp/sluice-prompt-$name.wav"
}
say welcome "Welcome. Please enter the meeting number, followed by the pound key."
say passcode "Please enter the meeting passcode, followed by the pound key."
say unknown-meeting "That meeting number was not found. Please try again."
say wrong-passcode "That passcode is not correct. Please try again."
say e2ee "This meeting is end to end encrypted and cannot be joined by phone. Goodbye."
say joining "You are joining the meeting now."
say goodbye "Sorry, that did not work. Goodbye."
say unavailable "This meeting cannot take more callers right now. Goodbye."
