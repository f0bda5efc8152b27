#!/usr/bin/env bash
# Pull-request previews: a fork named pr-<number> on the override service, and one PR
# comment with its URL. Called by examples/ci/github-preview.yml; runs anywhere with
# bash, curl, jq and `pip install "featureflag[httpx]"` (see docs/previews.md).
#
#   preview.sh env-from-comment   print the environment of a "/preview <env>" comment
#   preview.sh env-from-pr        print the environment of this PR's preview, or nothing
#   preview.sh apply              create or replace the fork, post or update the comment
#   preview.sh delete             delete the fork, say so in the comment
#
# Environment:
#   PR_NUMBER                       the pull request (all but env-from-comment)
#   COMMENT_BODY                    env-from-comment: the comment's text
#   PREVIEW_ENV                     apply: the environment (qa), recorded in the comment
#   PREVIEW_UPSTREAM                apply: the app to proxy; {pr} becomes the PR number
#   PREVIEW_ROUTES                  apply: optional "service=url" lines; {pr} as above
#   PREVIEW_FLAGS                   apply: optional "name=value" lines
#   PREVIEW_TTL                     apply: fork lifetime after the last push (default 7d)
#   FEATUREFLAG_SERVICE_URL, FEATUREFLAG_API_TOKEN   the override service (apply, delete)
#   GITHUB_API_URL, GITHUB_REPOSITORY, GITHUB_TOKEN  the comments API (set by Actions)
set -euo pipefail

MARKER="<!-- featureflag-preview"

die() {
    echo "preview.sh: $*" >&2
    exit 2
}

need() {
    local name
    for name in "$@"; do
        [[ -n "${!name:-}" ]] || die "set $name"
    done
}

# GitHub REST call: api METHOD PATH [JSON body]; prints the response body.
api() {
    local method=$1 path=$2 body=${3:-}
    local args=(--silent --show-error --fail-with-body --location --request "$method"
        --header "Accept: application/vnd.github+json"
        --header "Authorization: Bearer $GITHUB_TOKEN"
        --header "X-GitHub-Api-Version: 2022-11-28")
    if [[ -n "$body" ]]; then
        args+=(--header "Content-Type: application/json" --data "$body")
    fi
    curl "${args[@]}" "${GITHUB_API_URL%/}$path"
}

# The id and body of this PR's preview comment (first page of 100 comments), or nothing.
find_comment() {
    api GET "/repos/$GITHUB_REPOSITORY/issues/$PR_NUMBER/comments?per_page=100" |
        jq -c --arg marker "$MARKER" 'map(select(.body | startswith($marker))) | first // empty'
}

# Post the comment, or update the one already there: one comment per PR, ever.
upsert_comment() {
    local text=$1 existing id
    existing=$(find_comment)
    if [[ -n "$existing" ]]; then
        id=$(jq -r .id <<<"$existing")
        api PATCH "/repos/$GITHUB_REPOSITORY/issues/comments/$id" \
            "$(jq -n --arg body "$text" '{body: $body}')" >/dev/null
    else
        api POST "/repos/$GITHUB_REPOSITORY/issues/$PR_NUMBER/comments" \
            "$(jq -n --arg body "$text" '{body: $body}')" >/dev/null
    fi
}

check_env_name() {
    [[ "$1" =~ ^[a-z0-9][a-z0-9-]{0,30}$ ]] ||
        die "environment '$1': a preview environment is 1 to 31 lower-case letters, digits or '-'"
}

case "${1:-}" in
env-from-comment)
    need COMMENT_BODY
    read -r command env rest <<<"$COMMENT_BODY" || true
    [[ "$command" == "/preview" && -n "${env:-}" && -z "${rest:-}" ]] ||
        die "write '/preview <environment>', e.g. /preview qa"
    check_env_name "$env"
    echo "$env"
    ;;
env-from-pr)
    need PR_NUMBER GITHUB_API_URL GITHUB_REPOSITORY GITHUB_TOKEN
    find_comment | jq -r '.body | capture("^<!-- featureflag-preview env=(?<env>[a-z0-9-]+)") | .env'
    ;;
apply)
    need PR_NUMBER PREVIEW_ENV PREVIEW_UPSTREAM GITHUB_API_URL GITHUB_REPOSITORY GITHUB_TOKEN
    check_env_name "$PREVIEW_ENV"
    name="pr-$PR_NUMBER"
    args=(fork apply "$name" --upstream "${PREVIEW_UPSTREAM//\{pr\}/$PR_NUMBER}"
        --label "pr=$PR_NUMBER" --label "env=$PREVIEW_ENV" --ttl "${PREVIEW_TTL:-7d}")
    while read -r route; do
        [[ -n "$route" ]] && args+=(--route "${route//\{pr\}/$PR_NUMBER}")
    done <<<"${PREVIEW_ROUTES:-}"
    while read -r flag; do
        [[ -n "$flag" ]] && args+=(--flag "$flag")
    done <<<"${PREVIEW_FLAGS:-}"
    # Exit 1 (the service refused) or 2 (configuration): the message is on stderr.
    url=$(featureflag "${args[@]}")
    upsert_comment "$MARKER env=$PREVIEW_ENV -->
**Preview ($PREVIEW_ENV)**: $url

Fork \`$name\` follows each push to this pull request and is deleted when it closes \
(it expires ${PREVIEW_TTL:-7d} after the last push)."
    echo "$url"
    ;;
delete)
    need PR_NUMBER GITHUB_API_URL GITHUB_REPOSITORY GITHUB_TOKEN
    featureflag fork delete "pr-$PR_NUMBER" --missing-ok
    existing=$(find_comment)
    if [[ -n "$existing" ]]; then
        env=$(jq -r '.body | capture("env=(?<env>[a-z0-9-]+)") | .env' <<<"$existing")
        upsert_comment "$MARKER env=$env -->
**Preview ($env)**: removed, the pull request is closed."
    fi
    ;;
*)
    die "usage: preview.sh env-from-comment|env-from-pr|apply|delete"
    ;;
esac
