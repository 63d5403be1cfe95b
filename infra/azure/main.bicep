// askcody-entra-reactor on Azure Container Apps.
//
//   az deployment group create -g <resource-group> -f infra/azure/main.bicep -p @infra/azure/main.parameters.json
//
// What it creates: a Log Analytics workspace, a Container Apps environment that logs to it, a
// user-assigned managed identity, a storage account with an Azure Files share for the SQLite store
// (/var/lib/reactor), the role assignment that lets the identity read the Key Vault secrets, and the
// container app itself (exactly one replica). Two listeners: the public one, port 8080 (the webhooks and
// /healthz), is the only one behind the external HTTPS ingress; the admin one, port 9090 (status page,
// /status.json, /metrics, /readyz, /healthz), is mapped with external: false, so only apps in the same
// Container Apps environment (a Prometheus, a jump container) reach it, never the internet. The probes go
// to 9090 directly. The status page and /status.json ask for the admin token (Key Vault secret).
// What it expects: an existing Key Vault in the same resource group, using Azure RBAC, holding the AskCody
// SCIM token and the admin token (and, only with an app registration, its client secret); the image in a
// registry the identity can pull from (AcrPull) or a public one. Graph application permissions are
// granted by setup-graph-app.sh (see infra/README.md).

targetScope = 'resourceGroup'

@description('Base name of the resources.')
@minLength(3)
@maxLength(24)
param name string = 'askcody-reactor'

@description('Azure region.')
param location string = resourceGroup().location

@description('Container image, e.g. myregistry.azurecr.io/askcody-entra-reactor:0.1.0 (built with infra/Dockerfile).')
param image string

@description('Registry login server to pull from with the managed identity (grant it AcrPull); empty for a public image.')
param registryServer string = ''

@description('Entra tenant id whose users and groups are synced.')
param tenantId string = subscription().tenantId

@description('Client id of a Graph app registration. Empty: the user-assigned managed identity is used (no secret).')
param graphClientId string = ''

@description('Key Vault secret holding that app registration\'s client secret; empty with the managed identity.')
param graphClientSecretName string = ''

@description('AskCody SCIM base URL, e.g. https://<tenant>.askcody.com/scim/v2.')
param askcodyScimUrl string

@description('Key Vault secret holding the AskCody SCIM bearer token.')
param askcodyTokenSecretName string = 'askcody-scim-token'

@description('Key Vault secret holding the admin listener\'s bearer token (status page and /status.json); generate it, e.g. openssl rand -hex 32.')
param adminTokenSecretName string = 'reactor-admin-token'

@description('Name of the existing Key Vault (same resource group, RBAC authorization).')
param keyVaultName string

@allowed([
  'rfc'
  'entra'
])
@description('SCIM PATCH dialect AskCody expects.')
param askcodyDialect string = 'rfc'

@allowed([
  'disable'
  'delete'
])
@description('What happens in AskCody to a user leaving every group in scope.')
param askcodyDeprovision string = 'disable'

@description('Entra attribute synced to the SCIM enterprise costCenter.')
param costCenterAttribute string = 'employeeOrgData/costCenter'

@description('Groups in scope: objects with id (Entra group object id), askcodyGroup (name in AskCody) and grants (role, reception, service_provider or access).')
param groups array

@description('Public https URL Graph delivers to. Empty: the container app\'s own https://<app>.<environment domain>.')
param publicUrl string = ''

@description('Seconds between full reconciles.')
param reconcileIntervalSeconds int = 900

@description('Log retention in days.')
param logRetentionDays int = 30

// The admin listener's port: internal to the environment only (see the ingress below).
var adminPort = 9090

var storageAccountName = take('st${toLower(replace(name, '-', ''))}${uniqueString(resourceGroup().id)}', 24)
var shareName = 'reactor-store'
var useManagedIdentityForGraph = empty(graphClientId)

// reactor.toml: only what environment variables cannot carry (the [[groups]] tables and the attributes);
// everything else is set as REACTOR_* environment variables below.
var groupsToml = join(map(groups, g => '[[groups]]\nid = "${g.id}"\naskcody_group = "${g.askcodyGroup}"\ngrants = "${g.grants}"\n'), '\n')
var reactorToml = '[attributes]\ncost_center = "${costCenterAttribute}"\n\n${groupsToml}'

resource logs 'Microsoft.OperationalInsights/workspaces@2022-10-01' = {
  name: '${name}-logs'
  location: location
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
  }
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${name}-id'
  location: location
}

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// Key Vault Secrets User: read secret values (the vault must use the Azure RBAC permission model).
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, identity.id, keyVaultSecretsUserRoleId)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource storage 'Microsoft.Storage/storageAccounts@2023-01-01' = {
  name: storageAccountName
  location: location
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
  }
}

resource fileService 'Microsoft.Storage/storageAccounts/fileServices@2023-01-01' = {
  parent: storage
  name: 'default'
}

resource share 'Microsoft.Storage/storageAccounts/fileServices/shares@2023-01-01' = {
  parent: fileService
  name: shareName
  properties: {
    shareQuota: 5
  }
}

resource containerEnv 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: '${name}-env'
  location: location
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logs.properties.customerId
        sharedKey: logs.listKeys().primarySharedKey
      }
    }
  }
}

resource environmentStorage 'Microsoft.App/managedEnvironments/storages@2024-03-01' = {
  parent: containerEnv
  name: 'reactorstore'
  properties: {
    azureFile: {
      accountName: storage.name
      accountKey: storage.listKeys().keys[0].value
      shareName: share.name
      accessMode: 'ReadWrite'
    }
  }
}

var appName = '${name}-app'
var effectivePublicUrl = empty(publicUrl) ? 'https://${appName}.${containerEnv.properties.defaultDomain}' : publicUrl

var baseSecrets = [
  {
    name: 'askcody-token'
    keyVaultUrl: '${keyVault.properties.vaultUri}secrets/${askcodyTokenSecretName}'
    identity: identity.id
  }
  {
    // Required: the admin listener binds 0.0.0.0 (for the probes and in-environment scrapes), and the
    // reactor refuses a non-loopback admin listener without a token.
    name: 'admin-token'
    keyVaultUrl: '${keyVault.properties.vaultUri}secrets/${adminTokenSecretName}'
    identity: identity.id
  }
  {
    name: 'reactor-toml'
    value: reactorToml
  }
]
var graphSecret = empty(graphClientSecretName) ? [] : [
  {
    name: 'graph-client-secret'
    keyVaultUrl: '${keyVault.properties.vaultUri}secrets/${graphClientSecretName}'
    identity: identity.id
  }
]

var baseEnv = [
  {
    name: 'REACTOR_CONFIG'
    value: '/etc/reactor/reactor.toml'
  }
  {
    name: 'REACTOR_SERVER_HOST'
    value: '0.0.0.0'
  }
  {
    name: 'REACTOR_SERVER_PORT'
    value: '8080'
  }
  {
    // All interfaces of the replica; the ingress maps 9090 with external: false, so that is the
    // environment only.
    name: 'REACTOR_SERVER_ADMIN_HOST'
    value: '0.0.0.0'
  }
  {
    name: 'REACTOR_SERVER_ADMIN_PORT'
    value: string(adminPort)
  }
  {
    name: 'REACTOR_SERVER_ADMIN_TOKEN'
    secretRef: 'admin-token'
  }
  {
    name: 'REACTOR_SERVER_PUBLIC_URL'
    value: effectivePublicUrl
  }
  {
    name: 'REACTOR_STORE_URL'
    value: 'sqlite:////var/lib/reactor/reactor.db'
  }
  {
    name: 'REACTOR_GRAPH_TENANT_ID'
    value: tenantId
  }
  {
    // With the managed identity: its client id, and no secret (ManagedIdentityCredential).
    name: 'REACTOR_GRAPH_CLIENT_ID'
    value: useManagedIdentityForGraph ? identity.properties.clientId : graphClientId
  }
  {
    // For DefaultAzureCredential: which user-assigned identity to use.
    name: 'AZURE_CLIENT_ID'
    value: identity.properties.clientId
  }
  {
    name: 'REACTOR_ASKCODY_SCIM_URL'
    value: askcodyScimUrl
  }
  {
    name: 'REACTOR_ASKCODY_TOKEN'
    secretRef: 'askcody-token'
  }
  {
    name: 'REACTOR_ASKCODY_DIALECT'
    value: askcodyDialect
  }
  {
    name: 'REACTOR_ASKCODY_DEPROVISION'
    value: askcodyDeprovision
  }
  {
    name: 'REACTOR_SYNC_RECONCILE_INTERVAL_SECONDS'
    value: string(reconcileIntervalSeconds)
  }
]
var graphSecretEnv = empty(graphClientSecretName) ? [] : [
  {
    name: 'REACTOR_GRAPH_CLIENT_SECRET'
    secretRef: 'graph-client-secret'
  }
]

resource app 'Microsoft.App/containerApps@2024-03-01' = {
  name: appName
  location: location
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  dependsOn: [
    // The Key Vault references are resolved with the identity when the revision starts.
    secretsUser
  ]
  properties: {
    managedEnvironmentId: containerEnv.id
    configuration: {
      activeRevisionsMode: 'Single'
      // The internet reaches the public listener (8080) only. The admin listener is an additional port
      // that is not external: reachable as <app name>:9090 from the same environment, not from outside.
      ingress: {
        external: true
        targetPort: 8080
        transport: 'http'
        allowInsecure: false
        additionalPortMappings: [
          {
            external: false
            targetPort: adminPort
            exposedPort: adminPort
          }
        ]
        traffic: [
          {
            latestRevision: true
            weight: 100
          }
        ]
      }
      secrets: concat(baseSecrets, graphSecret)
      registries: empty(registryServer) ? [] : [
        {
          server: registryServer
          identity: identity.id
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'reactor'
          image: image
          args: [
            'serve'
          ]
          resources: {
            cpu: json('0.5')
            memory: '1Gi'
          }
          env: concat(baseEnv, graphSecretEnv)
          // On the admin listener: the probes reach the replica directly, not through the ingress.
          probes: [
            {
              type: 'Startup'
              httpGet: {
                path: '/healthz'
                port: adminPort
              }
              periodSeconds: 3
              timeoutSeconds: 2
              failureThreshold: 10
            }
            {
              type: 'Liveness'
              httpGet: {
                path: '/healthz'
                port: adminPort
              }
              periodSeconds: 15
              timeoutSeconds: 3
              failureThreshold: 4
            }
            {
              type: 'Readiness'
              httpGet: {
                path: '/readyz'
                port: adminPort
              }
              periodSeconds: 10
              timeoutSeconds: 5
              failureThreshold: 3
            }
          ]
          volumeMounts: [
            {
              volumeName: 'store'
              mountPath: '/var/lib/reactor'
            }
            {
              volumeName: 'config'
              mountPath: '/etc/reactor'
            }
          ]
        }
      ]
      // Exactly one replica: the SQLite store has one writer. Single revision mode replaces it on update.
      scale: {
        minReplicas: 1
        maxReplicas: 1
      }
      volumes: [
        {
          name: 'store'
          storageType: 'AzureFile'
          storageName: environmentStorage.name
          // SMB: files owned by the image's user (10001); nobrl because SQLite's byte-range locks are not
          // reliable over SMB (safe with the single writer this app has).
          mountOptions: 'uid=10001,gid=10001,dir_mode=0750,file_mode=0640,nobrl,mfsymlinks,cache=strict'
        }
        {
          name: 'config'
          storageType: 'Secret'
          secrets: [
            {
              secretRef: 'reactor-toml'
              path: 'reactor.toml'
            }
          ]
        }
      ]
    }
  }
}

@description('Public host name of the container app (the public listener, port 8080, only).')
output fqdn string = app.properties.configuration.ingress.fqdn

@description('The admin listener as other apps in the same environment reach it (status page, /metrics, /readyz); not reachable from outside.')
output adminUrl string = 'http://${appName}:${adminPort}'

@description('server.public_url in use; Graph notifications go to <publicUrl>/notifications.')
output publicUrl string = effectivePublicUrl

@description('Principal (object) id of the managed identity: pass it to setup-graph-app.sh --managed-identity.')
output identityPrincipalId string = identity.properties.principalId

@description('Client id of the managed identity.')
output identityClientId string = identity.properties.clientId
