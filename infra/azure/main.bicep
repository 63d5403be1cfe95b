// askcody-entra-reactor on Azure Container Apps.
//
//   az deployment group create -g <resource-group> -f infra/azure/main.bicep -p @infra/azure/main.parameters.json
//
// What it creates: a Log Analytics workspace, a virtual network with two delegated subnets, a Container
// Apps environment in one of them that logs to the workspace, a user-assigned managed identity, an Azure
// Database for PostgreSQL Flexible Server in the other (private access only: no public endpoint, a
// private DNS zone linked to the network) with Microsoft Entra authentication only and the managed
// identity as its Entra administrator (no database password anywhere: the password of the reactor for each
// connection is an access token of the identity, store.entra_auth), the role assignment that lets the
// identity read the Key Vault secrets, and the container app itself (at least two replicas on the one
// database: every replica takes notifications, one at a time leads renewal, lifecycle and reconcile, and
// another takes over within store.lease_seconds when it dies). Two listeners: the public one, port 8080 (the webhooks and
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

@description('Most replicas of the container app (scaled on HTTP load); at least two run at all times.')
@minValue(2)
@maxValue(10)
param maxReplicas int = 4

@description('Seconds a replica holds the leader lease (store.lease_seconds): a survivor leads within that after the leader dies.')
@minValue(5)
param storeLeaseSeconds int = 15

@description('Address space of the virtual network of the environment and the database.')
param vnetAddressPrefix string = '10.42.0.0/16'

@description('Subnet of the Container Apps environment (delegated to Microsoft.App/environments; /27 or larger).')
param appsSubnetPrefix string = '10.42.0.0/23'

@description('Subnet of the PostgreSQL server (delegated to Microsoft.DBforPostgreSQL/flexibleServers).')
param postgresSubnetPrefix string = '10.42.2.0/24'

@description('PostgreSQL compute: SKU name (e.g. Standard_B1ms, Standard_D2ds_v5).')
param postgresSkuName string = 'Standard_B1ms'

@allowed([
  'Burstable'
  'GeneralPurpose'
  'MemoryOptimized'
])
@description('PostgreSQL compute tier of that SKU.')
param postgresTier string = 'Burstable'

@description('PostgreSQL major version.')
param postgresVersion string = '16'

@description('PostgreSQL storage in GiB.')
param postgresStorageGb int = 32

@allowed([
  'Disabled'
  'SameZone'
  'ZoneRedundant'
])
@description('PostgreSQL high availability: a standby that takes over when the primary fails (not on Burstable).')
param postgresHighAvailability string = 'Disabled'

@description('Object id of an Entra group of operators made PostgreSQL administrators too (psql, the CLI verbs from a jump box); empty: none.')
param postgresOperatorGroupId string = ''

@description('Display name of that group (its PostgreSQL role name).')
param postgresOperatorGroupName string = ''

@description('Days of PostgreSQL point-in-time backups.')
@minValue(7)
@maxValue(35)
param postgresBackupRetentionDays int = 7

// The admin listener's port: internal to the environment only (see the ingress below).
var adminPort = 9090

var postgresServerName = '${name}-pg-${uniqueString(resourceGroup().id)}'
var databaseName = 'reactor'
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

resource vnet 'Microsoft.Network/virtualNetworks@2023-09-01' = {
  name: '${name}-vnet'
  location: location
  properties: {
    addressSpace: {
      addressPrefixes: [
        vnetAddressPrefix
      ]
    }
    subnets: [
      {
        name: 'apps'
        properties: {
          addressPrefix: appsSubnetPrefix
          delegations: [
            {
              name: 'apps'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: 'postgres'
        properties: {
          addressPrefix: postgresSubnetPrefix
          delegations: [
            {
              name: 'postgres'
              properties: {
                serviceName: 'Microsoft.DBforPostgreSQL/flexibleServers'
              }
            }
          ]
        }
      }
    ]
  }
}

// The name of the server resolves to its private address in the network (private access: no public endpoint).
resource postgresDns 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: '${postgresServerName}.private.postgres.database.azure.com'
  location: 'global'
}

resource postgresDnsLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = {
  parent: postgresDns
  name: '${name}-vnet'
  location: 'global'
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

resource postgres 'Microsoft.DBforPostgreSQL/flexibleServers@2023-06-01-preview' = {
  name: postgresServerName
  location: location
  sku: {
    name: postgresSkuName
    tier: postgresTier
  }
  dependsOn: [
    postgresDnsLink
  ]
  properties: {
    version: postgresVersion
    storage: {
      storageSizeGB: postgresStorageGb
      autoGrow: 'Enabled'
    }
    backup: {
      backupRetentionDays: postgresBackupRetentionDays
      geoRedundantBackup: 'Disabled'
    }
    highAvailability: {
      mode: postgresHighAvailability
    }
    network: {
      delegatedSubnetResourceId: '${vnet.id}/subnets/postgres'
      privateDnsZoneArmResourceId: postgresDns.id
      publicNetworkAccess: 'Disabled'
    }
    // Microsoft Entra only: no administrator login, no password to keep or rotate.
    authConfig: {
      activeDirectoryAuth: 'Enabled'
      passwordAuth: 'Disabled'
      tenantId: subscription().tenantId
    }
  }
}

resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2023-06-01-preview' = {
  parent: postgres
  name: databaseName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
}

// The managed identity is the Entra administrator of the server: its PostgreSQL role is named
// after it and creates the schema at the first start (under an advisory lock).
resource postgresAdmin 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2023-06-01-preview' = {
  parent: postgres
  name: identity.properties.principalId
  // One change at a time on the server.
  dependsOn: [
    database
  ]
  properties: {
    principalType: 'ServicePrincipal'
    principalName: identity.name
    tenantId: subscription().tenantId
  }
}

resource postgresOperators 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2023-06-01-preview' = if (!empty(postgresOperatorGroupId)) {
  parent: postgres
  name: empty(postgresOperatorGroupId) ? 'none' : postgresOperatorGroupId
  dependsOn: [
    postgresAdmin
  ]
  properties: {
    principalType: 'Group'
    principalName: postgresOperatorGroupName
    tenantId: subscription().tenantId
  }
}

resource containerEnv 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: '${name}-env'
  location: location
  properties: {
    // In the network of the database; the webhooks are still reached over the external ingress.
    vnetConfiguration: {
      infrastructureSubnetId: '${vnet.id}/subnets/apps'
      internal: false
    }
    workloadProfiles: [
      {
        name: 'Consumption'
        workloadProfileType: 'Consumption'
      }
    ]
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logs.properties.customerId
        sharedKey: logs.listKeys().primarySharedKey
      }
    }
  }
}

var appName = '${name}-app'
var effectivePublicUrl = empty(publicUrl) ? 'https://${appName}.${containerEnv.properties.defaultDomain}' : publicUrl
// The user is the PostgreSQL role of the identity; no password: store.entra_auth gives an access token instead.
var storeUrl = 'postgresql://${identity.name}@${postgres.properties.fullyQualifiedDomainName}:5432/${databaseName}?sslmode=require'

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
    value: storeUrl
  }
  {
    // The password of each new connection: an access token of the managed identity (AZURE_CLIENT_ID).
    name: 'REACTOR_STORE_ENTRA_AUTH'
    value: 'true'
  }
  {
    name: 'REACTOR_STORE_LEASE_SECONDS'
    value: string(storeLeaseSeconds)
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
    // The role of the identity must exist in PostgreSQL before a replica connects.
    postgresAdmin
    database
  ]
  properties: {
    managedEnvironmentId: containerEnv.id
    configuration: {
      // On update the new revision starts beside the old one and takes the traffic once ready: both on
      // the same database, as the replicas are anyway.
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
              volumeName: 'config'
              mountPath: '/etc/reactor'
            }
          ]
        }
      ]
      // Two replicas at least, so that losing one (a crash, a platform move, an update) leaves one serving.
      scale: {
        minReplicas: 2
        maxReplicas: maxReplicas
      }
      volumes: [
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

@description('Host name of the PostgreSQL server (resolvable inside the virtual network only).')
output postgresFqdn string = postgres.properties.fullyQualifiedDomainName

@description('store.url of the replicas (no password in it: Entra authentication with the managed identity).')
output storeUrl string = storeUrl
