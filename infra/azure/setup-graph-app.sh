#!/usr/bin/env bash
# Give askcody-entra-reactor its Microsoft Graph application permissions
# (User.Read.All, Group.Read.All, GroupMember.Read.All) and grant admin consent.
#
# Two ways, pick one:
#
#   1. The container app's user-assigned managed identity (no secret at all; infra/azure/main.bicep
#      outputs its principal id as identityPrincipalId):
#        setup-graph-app.sh --managed-identity <principal-object-id>
#
#   2. An app registration (Kubernetes, anywhere else): creates it, or reuses the one with that display
#      name, with its service principal; optionally creates a client secret and stores it in Key Vault:
#        setup-graph-app.sh --app-name askcody-entra-reactor [--create-secret [--key-vault <vault>] [--secret-name <name>]]
#
# Admin consent for application permissions is an app role assignment of each Graph role to the
# service principal: that is what this script creates (the same as "Grant admin consent" in the portal).
# For app registrations it also records the permissions in requiredResourceAccess, so the portal shows
# them as configured and consented. Run it as a Global Administrator or Privileged Role Administrator
# (`az login --tenant <tenant>` first). Safe to run again: whatever exists already is kept.
set -euo pipefail

readonly GRAPH_APP_ID=00000003-0000-0000-c000-000000000000    # Microsoft Graph, the same in every tenant
readonly GRAPH_URL=${GRAPH_URL:-https://graph.microsoft.com/v1.0}
# The application roles the reactor needs. Their ids are looked up from the Graph service principal of
# the tenant (for reference, the well-known ids: User.Read.All df021288-bdef-4463-88db-98f22de89214,
# Group.Read.All 5b567255-7703-4780-807c-7be8301ae99b, GroupMember.Read.All 98830695-27a2-44f7-8c18-0c3ebc9698f6).
readonly ROLES=(User.Read.All Group.Read.All GroupMember.Read.All)
RETRY_SLEEP=${RETRY_SLEEP:-10}

usage() {
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-2}"
}

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# retry CMD...: new service principals take a while to replicate; try a few times before giving up.
retry() {
  local attempt=1
  until "$@"; do
    if ((attempt >= 6)); then
      return 1
    fi
    log "  (not there yet, retrying in ${RETRY_SLEEP}s)"
    sleep "$RETRY_SLEEP"
    attempt=$((attempt + 1))
  done
}

mode=""
app_name=""
principal_id=""
create_secret=false
key_vault=""
secret_name="graph-client-secret"
secret_years=1

while (($#)); do
  case "$1" in
    --app-name) mode=app; app_name=${2:?--app-name needs a value}; shift 2 ;;
    --managed-identity) mode=mi; principal_id=${2:?--managed-identity needs a principal id}; shift 2 ;;
    --create-secret) create_secret=true; shift ;;
    --key-vault) key_vault=${2:?--key-vault needs a vault name}; shift 2 ;;
    --secret-name) secret_name=${2:?--secret-name needs a value}; shift 2 ;;
    --secret-years) secret_years=${2:?--secret-years needs a value}; shift 2 ;;
    -h | --help) usage 0 ;;
    *) log "unknown argument: $1"; usage 2 ;;
  esac
done
[[ -n $mode ]] || usage 2
if [[ $mode == mi && ($create_secret == true || -n $key_vault) ]]; then
  die "--create-secret and --key-vault make no sense with --managed-identity (it has no secret)"
fi
if [[ -n $key_vault && $create_secret != true ]]; then
  die "--key-vault is only used with --create-secret"
fi
command -v az >/dev/null || die "the Azure CLI (az) is not installed"

tenant_id=$(az account show --query tenantId -o tsv)
[[ -n $tenant_id ]] || die "not logged in: run az login --tenant <tenant> first"
log "tenant: $tenant_id"

graph_sp_id=$(az ad sp show --id "$GRAPH_APP_ID" --query id -o tsv)
[[ -n $graph_sp_id ]] || die "the Microsoft Graph service principal was not found in this tenant"

role_ids=()
for role in "${ROLES[@]}"; do
  id=$(az ad sp show --id "$GRAPH_APP_ID" \
    --query "appRoles[?value=='$role' && contains(allowedMemberTypes, 'Application')].id" -o tsv)
  [[ -n $id ]] || die "Microsoft Graph has no application role $role"
  role_ids+=("$id")
done

# grant_roles SP_OBJECT_ID: assign every role (admin consent), skipping those already assigned.
grant_roles() {
  local sp_id=$1 existing i
  existing=$(az rest --method GET --url "$GRAPH_URL/servicePrincipals/$sp_id/appRoleAssignments" \
    --query "value[?resourceId=='$graph_sp_id'].appRoleId" -o tsv)
  for i in "${!ROLES[@]}"; do
    if grep -qxF "${role_ids[$i]}" <<<"$existing"; then
      log "  ${ROLES[$i]}: already granted"
      continue
    fi
    retry az rest --method POST --url "$GRAPH_URL/servicePrincipals/$sp_id/appRoleAssignments" \
      --headers Content-Type=application/json \
      --body "{\"principalId\": \"$sp_id\", \"resourceId\": \"$graph_sp_id\", \"appRoleId\": \"${role_ids[$i]}\"}" \
      -o none || die "could not grant ${ROLES[$i]} (are you a Privileged Role Administrator?)"
    log "  ${ROLES[$i]}: granted"
  done
}

if [[ $mode == mi ]]; then
  log "managed identity (service principal $principal_id): granting Microsoft Graph application permissions"
  grant_roles "$principal_id"
  log "done. Container app: REACTOR_GRAPH_CLIENT_ID = the identity's client id, no client secret (main.bicep does this)."
  exit 0
fi

# --- app registration
app_ids=$(az ad app list --display-name "$app_name" --query "[].appId" -o tsv)
if [[ -z $app_ids ]]; then
  app_id=$(az ad app create --display-name "$app_name" --sign-in-audience AzureADMyOrg --query appId -o tsv)
  log "app registration $app_name created: $app_id"
elif [[ $(wc -l <<<"$app_ids") -gt 1 ]]; then
  die "several app registrations are called $app_name: rename or delete the extra ones"
else
  app_id=$app_ids
  log "app registration $app_name reused: $app_id"
fi

sp_id=$(az ad sp list --filter "appId eq '$app_id'" --query "[].id" -o tsv)
if [[ -z $sp_id ]]; then
  sp_id=$(retry az ad sp create --id "$app_id" --query id -o tsv) || die "could not create the service principal"
  log "service principal created: $sp_id"
fi

configured=$(az ad app permission list --id "$app_id" \
  --query "[?resourceAppId=='$GRAPH_APP_ID'].resourceAccess[].id" -o tsv)
missing=()
for i in "${!ROLES[@]}"; do
  grep -qxF "${role_ids[$i]}" <<<"$configured" || missing+=("${role_ids[$i]}=Role")
done
if ((${#missing[@]})); then
  az ad app permission add --id "$app_id" --api "$GRAPH_APP_ID" --api-permissions "${missing[@]}" -o none
  log "required permissions recorded: ${#missing[@]} added"
fi

log "granting Microsoft Graph application permissions (admin consent)"
grant_roles "$sp_id"

if [[ $create_secret == true ]]; then
  secret=$(az ad app credential reset --id "$app_id" --append --display-name askcody-entra-reactor \
    --years "$secret_years" --query password -o tsv)
  if [[ -n $key_vault ]]; then
    tmp=$(umask 077 && mktemp)
    trap 'rm -f "$tmp"' EXIT
    printf '%s' "$secret" >"$tmp"
    az keyvault secret set --vault-name "$key_vault" --name "$secret_name" --file "$tmp" -o none
    rm -f "$tmp"
    log "client secret stored in Key Vault $key_vault as $secret_name (main.bicep: graphClientSecretName=$secret_name)"
  else
    log "client secret (shown once; store it as REACTOR_GRAPH_CLIENT_SECRET):"
    printf '%s\n' "$secret"
  fi
fi

log "done. Configure the reactor with:"
log "  graph.tenant_id = \"$tenant_id\"   (REACTOR_GRAPH_TENANT_ID)"
log "  graph.client_id = \"$app_id\"   (REACTOR_GRAPH_CLIENT_ID)"
